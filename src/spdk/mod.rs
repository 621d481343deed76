//! The SPDK bdev module "jraid" (feature `spdk`).
//!
//! Built into `libjraid.so`, which `LD_PRELOAD` puts into `spdk_tgt`, bdevperf or the fio
//! plugin: a load-time constructor registers the module and its RPCs before the bdev subsystem
//! starts. One io_device per volume; its channel on each reactor ([`channel`]) holds a
//! [`crate::engine::Channel`] whose backend ([`backend`]) talks to that reactor's channels to
//! every member and to the journal. Volumes come up through `bdev_jraid_create` or, from their
//! superblocks, through examine; both run recovery before the bdev is registered.
//!
//! Unsafe code lives only in this directory (and in spdk-sys); every C callback runs under
//! [`ffi::guard`], which aborts on panic.
#![allow(unsafe_code)]

mod backend;
mod base;
mod bdev;
mod channel;
mod create;
mod dma;
mod examine;
mod ffi;
mod json;
mod life;
mod rebuild;
mod reserve;
mod rpc;
mod scrub;
mod set_journal;
mod status;
mod superblocks;
mod xor;

use std::cell::UnsafeCell;

use spdk_sys as sys;

/// The module struct SPDK links into its list; lives forever at a stable address.
struct Module(UnsafeCell<sys::spdk_bdev_module>);

// SAFETY: written only by SPDK's bdev layer (its list links and internal fields), on its
// threads, under its own locking; jraid only passes the address around.
unsafe impl Sync for Module {}

static MODULE: Module = Module(UnsafeCell::new(module()));

const fn module() -> sys::spdk_bdev_module {
    // SAFETY: an all-zero spdk_bdev_module is "no callbacks, no state".
    let mut m: sys::spdk_bdev_module = unsafe { std::mem::MaybeUninit::zeroed().assume_init() };
    m.name = c"jraid".as_ptr();
    m.module_init = Some(module_init);
    m.module_fini = Some(module_fini);
    m.get_ctx_size = Some(get_ctx_size);
    m.config_json = Some(config_json);
    m.examine_disk = Some(examine::examine_disk);
    m
}

/// The module, for claims and registration.
pub(crate) fn module_ptr() -> *mut sys::spdk_bdev_module {
    MODULE.0.get()
}

unsafe extern "C" fn module_init() -> i32 {
    ffi::guard("module_init", || {
        dma::install_page_allocator();
        xor::apply();
        reserve::start();
        ffi::noticelog!("jraid module initialised");
        0
    })
}

unsafe extern "C" fn module_fini() {
    // Volumes are unregistered (destruct) by the bdev layer before this runs; what is left is
    // the module's own poller and the reserve thread.
    ffi::guard("module_fini", || {
        rebuild::stop_watch();
        reserve::stop();
    })
}

unsafe extern "C" fn get_ctx_size() -> i32 {
    // The engine tracks requests by the bdev_io address; a read sent straight to a member keeps
    // its few words of state in the bdev_io itself.
    backend::DIRECT_READ_CTX as i32
}

unsafe extern "C" fn config_json(w: *mut sys::spdk_json_write_ctx) -> i32 {
    ffi::guard("config_json", || {
        // The module-wide options first (they must precede the bdevs examine finds); each
        // volume writes its own bdev_jraid_create.
        let (window, mb) = create::recovery_limits();
        let (init_window, init_mb) = create::init_limits();
        json::write_value(
            w,
            &serde_json::json!({
                "method": "bdev_jraid_set_options",
                "params": {
                    "recovery_window": window,
                    "recovery_bandwidth_mb": mb,
                    "recovery_online": create::recovery_online(),
                    "init_window": init_window,
                    "init_bandwidth_mb": init_mb,
                    "xor_kernel": xor::setting().name(),
                },
            }),
        );
        0
    })
}

/// Runs when the shared object is loaded (before `main` of the SPDK app).
extern "C" fn jraid_load() {
    ffi::guard("jraid load", || {
        // SAFETY: the module struct is a static at a stable address, handed to SPDK once.
        unsafe {
            sys::spdk_bdev_module_list_add(module_ptr());
            sys::jraid_shim_anchor();
        }
        rpc::register();
    })
}

/// The load-time constructor (an `.init_array` entry, like C's `__attribute__((constructor))`).
#[used]
#[link_section = ".init_array"]
static JRAID_LOAD: extern "C" fn() = jraid_load;
