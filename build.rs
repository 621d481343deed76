//! With feature `spdk`: give every artefact of this crate (libjraid.so, tests) an rpath to the
//! SPDK shared libraries spdk-sys found through pkg-config. Without it: nothing.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var_os("CARGO_FEATURE_SPDK").is_none() {
        return;
    }
    // Exported by spdk-sys's build script (`links = "spdk"`, `cargo:libdir=`).
    if let Ok(dir) = std::env::var("DEP_SPDK_LIBDIR") {
        // DT_RPATH (not RUNPATH): it also serves the SPDK libraries' own dependencies.
        println!("cargo:rustc-link-arg=-Wl,--disable-new-dtags,-rpath,{dir}");
    }
    // SPDK's shared objects need OpenSSL & co. without recording them: keep them as real
    // dependencies of our artefacts even though nothing here calls them (--as-needed would
    // drop them and tests would fail with "undefined symbol: EVP_MD_CTX_free").
    if let Ok(out) = std::process::Command::new("pkg-config")
        .args(["--libs", "--static", "spdk_syslibs"])
        .output()
    {
        let libs: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .filter(|f| f.starts_with("-l"))
            .map(str::to_owned)
            .collect();
        if !libs.is_empty() {
            println!("cargo:rustc-link-arg=-Wl,--no-as-needed,{}", libs.join(","));
        }
    }
    // SPDK's shared objects leave the env layer (spdk_free, rte_*) to the app that loads them:
    // let executables of this crate (tests, the CLI) link without pulling DPDK in.
    println!("cargo:rustc-link-arg=-Wl,--allow-shlib-undefined");
    // The shared object is LD_PRELOADed into SPDK apps: keep its SPDK dependencies recorded
    // even where nothing from a library is referenced directly.
    println!("cargo:rustc-cdylib-link-arg=-Wl,--no-as-needed");
}
