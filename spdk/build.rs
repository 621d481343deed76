//! Finds SPDK through pkg-config, generates bindings with bindgen and compiles the C shim.
//!
//! SPDK's install is found from `PKG_CONFIG_PATH` (for an in-tree build:
//! `<spdk>/build/lib/pkgconfig`). Libraries are linked as shared objects; the shim archive is
//! linked whole so its constructor (the `bdev_jraid` log component) survives.

use std::env;
use std::path::PathBuf;
use std::process::Command;

/// The SPDK libraries the module calls into directly.
const LIBS: &[&str] = &[
    "spdk_bdev",
    "spdk_thread",
    "spdk_json",
    "spdk_jsonrpc",
    "spdk_rpc",
    "spdk_log",
    "spdk_util",
    "spdk_env_dpdk",
];

fn pkg_config(args: &[&str]) -> Result<String, String> {
    let out = Command::new("pkg-config")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run pkg-config: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_owned());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn main() {
    println!("cargo:rerun-if-changed=wrapper.h");
    println!("cargo:rerun-if-changed=shim/jraid_shim.h");
    println!("cargo:rerun-if-changed=shim/jraid_shim.c");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");

    if let Err(e) = pkg_config(&["--exists", "spdk_bdev"]) {
        panic!(
            "\n\nspdk-sys: SPDK not found by pkg-config ({e}).\n\
             Install the supported SPDK and point PKG_CONFIG_PATH at it:\n\
             \tscripts/install_spdk.sh     (SPDK v26.01 under /opt/jraid-spdk/v26.01)\n\
             \tPKG_CONFIG_PATH=/opt/jraid-spdk/v26.01/spdk/build/lib/pkgconfig cargo build --features spdk\n\
             (the `spdk` feature of jraid is off by default for machines without SPDK).\n"
        );
    }
    let cflags = pkg_config(&["--cflags", "spdk_bdev"]).expect("pkg-config --cflags spdk_bdev");
    let libdir = pkg_config(&["--libs-only-L", "spdk_bdev"])
        .expect("pkg-config --libs-only-L spdk_bdev")
        .split_whitespace()
        .find_map(|f| f.strip_prefix("-L").map(str::to_owned))
        .expect("pkg-config gives no -L for spdk_bdev");
    let includes: Vec<String> = cflags
        .split_whitespace()
        .filter_map(|f| f.strip_prefix("-I").map(str::to_owned))
        .collect();

    // The shim.
    let mut build = cc::Build::new();
    build
        .file("shim/jraid_shim.c")
        .include("shim")
        .warnings(true);
    // SPDK's headers as system headers: their own warnings (v26.05's histogram_data.h has unused
    // parameters) are not the shim's.
    for i in &includes {
        build.flag(format!("-isystem{i}"));
    }
    build.cargo_metadata(false).compile("jraid_spdk_shim");
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));
    println!("cargo:rustc-link-search=native={}", out_dir.display());
    println!("cargo:rustc-link-lib=static:+whole-archive=jraid_spdk_shim");

    // SPDK itself (shared), then the system libraries its shared objects expect.
    println!("cargo:rustc-link-search=native={libdir}");
    for l in LIBS {
        println!("cargo:rustc-link-lib=dylib={l}");
    }
    if let Ok(sys) = pkg_config(&["--libs", "--static", "spdk_syslibs"]) {
        for f in sys.split_whitespace() {
            if let Some(l) = f.strip_prefix("-l") {
                println!("cargo:rustc-link-lib=dylib={l}");
            }
        }
    }
    // For dependents (DEP_SPDK_LIBDIR): where the shared objects are, for an rpath.
    println!("cargo:libdir={libdir}");

    // Bindings.
    let mut b = bindgen::Builder::default()
        .header("wrapper.h")
        .clang_arg("-Ishim")
        .allowlist_function("spdk_.*")
        .allowlist_function("jraid_.*")
        .allowlist_type("spdk_.*")
        .allowlist_var("SPDK_.*")
        // Packed types that transitively hold #[repr(align)] ones do not compile (E0588), and
        // NVMe command bitfield unions come out with the wrong size: keep them as opaque bytes
        // (size and alignment stay right; jraid never looks inside).
        .opaque_type("spdk_nvme_ctrlr_data")
        .opaque_type("spdk_nvme_.*")
        .opaque_type("spdk_bdev_ext_io_opts")
        .default_enum_style(bindgen::EnumVariation::Consts)
        .derive_default(true)
        .layout_tests(true)
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()));
    for i in &includes {
        b = b.clang_arg(format!("-I{i}"));
    }
    let bindings = b
        .generate()
        .expect("bindgen failed over SPDK's headers (is libclang-dev installed?)");
    bindings
        .write_to_file(out_dir.join("bindings.rs"))
        .expect("write bindings.rs");
}
