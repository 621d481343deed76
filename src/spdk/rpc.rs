//! JSON-RPC methods: `bdev_jraid_create`, `bdev_jraid_delete`, `bdev_jraid_get_bdevs`,
//! `bdev_jraid_add_base_bdev`, `bdev_jraid_scrub`, `bdev_jraid_set_journal`.
#![allow(unsafe_code)]

use std::ffi::c_void;

use serde::Deserialize;
use serde_json::Value;
use spdk_sys as sys;

use super::bdev;
use super::create::{self, CreateRequest};
use super::ffi::{cstring, guard};
use super::json;
use super::xor;

/// A JSON-RPC request SPDK handed us; answered exactly once, on the app thread.
struct Request(*mut sys::spdk_jsonrpc_request);

impl Request {
    fn result(self, v: &Value) {
        // SAFETY: the request is live until answered; this consumes it.
        unsafe {
            let w = sys::spdk_jsonrpc_begin_result(self.0);
            if w.is_null() {
                return;
            }
            json::write_value(w, v);
            sys::spdk_jsonrpc_end_result(self.0, w);
        }
    }

    fn error(self, code: i32, msg: &str) {
        let m = cstring(msg);
        // SAFETY: the request is live until answered; this consumes it; `m` is NUL-terminated.
        unsafe { sys::spdk_jsonrpc_send_error_response(self.0, code, m.as_ptr()) };
    }

    fn invalid(self, msg: &str) {
        self.error(sys::SPDK_JSONRPC_ERROR_INVALID_PARAMS, msg)
    }
}

/// Parameters of `bdev_jraid_create`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateParams {
    name: String,
    strip_size_kb: u64,
    /// A list, or one string of names separated by spaces (as rpc.py's raid plugin sends).
    base_bdevs: Value,
    /// The journal bdev; or `journal_bdevs`, two of them (claim 13).
    #[serde(default)]
    journal_bdev: Option<String>,
    #[serde(default)]
    journal_bdevs: Option<Vec<String>>,
    /// With two journal bdevs: "alternate" (default: generation g to device g mod 2) or
    /// "mirror" (every record to both).
    #[serde(default)]
    journal_mode: Option<String>,
    #[serde(default)]
    volume: Option<u32>,
    #[serde(default)]
    uuid: Option<String>,
    /// `false` runs the volume without its journal: for side-by-side comparisons only (not
    /// persisted; a re-assembled volume always uses its journal).
    #[serde(default = "journal_on")]
    journal: bool,
    /// Per-stripe state a new volume may allocate, in MiB (default
    /// [`create::DEFAULT_MAX_STRIPE_STATE_MB`]).
    #[serde(default)]
    max_stripe_state_mb: Option<u64>,
    /// The journal on the members instead of journal bdevs: a mirrored copy in a reserved area
    /// at the end of members 0 and 1 (every member reserves it).
    #[serde(default)]
    journal_on_members: bool,
    /// Size of that area in KiB (default [`create::DEFAULT_JOURNAL_AREA_KB`]).
    #[serde(default)]
    journal_area_kb: Option<u64>,
    /// The caller vouches that every member reads as zeros (new or deallocated devices that
    /// return zeros, malloc bdevs): a new volume skips its initial parity pass. Without it,
    /// the volume initialises its parity in the background while it serves I/O.
    #[serde(default)]
    assume_clean: bool,
}

fn journal_on() -> bool {
    true
}

/// Most stripes a background pass (rebuild, scrub, resync) may keep in flight.
const MAX_WINDOW: usize = 1024;

/// A background pass's options from RPC parameters, checked.
fn pass_opts(
    window: Option<usize>,
    default_window: usize,
    bandwidth_mb: Option<u64>,
) -> Result<super::rebuild::PassOpts, String> {
    let window = window.unwrap_or(default_window);
    if !(1..=MAX_WINDOW).contains(&window) {
        return Err(format!(
            "window must be 1 to {MAX_WINDOW} stripes, got {window}"
        ));
    }
    Ok(super::rebuild::PassOpts {
        window,
        bandwidth_mb: bandwidth_mb.unwrap_or(0),
    })
}

fn parse<T: for<'de> Deserialize<'de>>(params: *const sys::spdk_json_val) -> Result<T, String> {
    let v = json::to_value(params)?;
    serde_json::from_value(v).map_err(|e| format!("invalid parameters: {e}"))
}

unsafe extern "C" fn rpc_create(
    req: *mut sys::spdk_jsonrpc_request,
    params: *const sys::spdk_json_val,
) {
    guard("bdev_jraid_create", || {
        let req = Request(req);
        let p: CreateParams = match parse(params) {
            Ok(p) => p,
            Err(e) => return req.invalid(&e),
        };
        let base_bdevs: Vec<String> = match &p.base_bdevs {
            Value::String(s) => s.split_whitespace().map(str::to_owned).collect(),
            Value::Array(a) => match a.iter().map(|x| x.as_str().map(str::to_owned)).collect() {
                Some(v) => v,
                None => return req.invalid("base_bdevs must be a list of bdev names"),
            },
            _ => return req.invalid("base_bdevs must be a list of bdev names"),
        };
        if p.journal_mode.is_some() && (p.journal_bdev.is_some() || p.journal_on_members) {
            return req.invalid("journal_mode needs two journal bdevs (journal_bdevs)");
        }
        if p.journal_area_kb.is_some() && !p.journal_on_members {
            return req.invalid("journal_area_kb goes with journal_on_members");
        }
        let journal_bdevs =
            match (p.journal_bdev, p.journal_bdevs) {
                (None, None) if p.journal_on_members => Vec::new(),
                (_, _) if p.journal_on_members => return req.invalid(
                    "journal_on_members keeps the journal on the members: give no journal_bdev(s)",
                ),
                (Some(j), None) => vec![j],
                (None, Some(js)) if (1..=2).contains(&js.len()) => js,
                (None, Some(_)) => return req.invalid("journal_bdevs must name one or two bdevs"),
                (Some(_), Some(_)) => {
                    return req.invalid("give journal_bdev or journal_bdevs, not both")
                }
                (None, None) => return req.invalid("journal_bdev (or journal_bdevs) is required"),
            };
        let journal_mode = match p.journal_mode.as_deref() {
            None | Some("alternate") => crate::journal::JournalMode::Alternate,
            Some("mirror") => crate::journal::JournalMode::Mirror,
            Some(m) => {
                return req.invalid(&format!(
                    "journal_mode must be \"alternate\" or \"mirror\", got {m:?}"
                ))
            }
        };
        let uuid = match p.uuid.as_deref().map(json::parse_uuid) {
            None => None,
            Some(Some(u)) => Some(u),
            Some(None) => return req.invalid("uuid is not a valid UUID"),
        };
        let r = CreateRequest {
            name: p.name,
            strip_size_kb: p.strip_size_kb,
            base_bdevs,
            journal_bdevs,
            journal_mode,
            volume: p.volume,
            uuid,
            journal: p.journal,
            max_stripe_state_mb: p
                .max_stripe_state_mb
                .unwrap_or(create::DEFAULT_MAX_STRIPE_STATE_MB),
            journal_area_kb: p
                .journal_on_members
                .then(|| p.journal_area_kb.unwrap_or(create::DEFAULT_JOURNAL_AREA_KB)),
            assume_clean: p.assume_clean,
        };
        create::create(
            r,
            Box::new(move |res| match res {
                Ok(v) => req.result(&Value::String(v.name.clone())),
                Err(e) => req.error(e.code, &e.msg),
            }),
        );
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NameParams {
    name: String,
}

unsafe extern "C" fn unregister_done(arg: *mut c_void, rc: i32) {
    guard("bdev_jraid_delete done", || {
        // SAFETY: `arg` is the Request boxed by rpc_delete, consumed once.
        let req = unsafe { Box::from_raw(arg as *mut Request) };
        if rc == 0 {
            req.result(&Value::Bool(true));
        } else {
            req.error(rc, &format!("unregister failed ({rc})"));
        }
    })
}

unsafe extern "C" fn rpc_delete(
    req: *mut sys::spdk_jsonrpc_request,
    params: *const sys::spdk_json_val,
) {
    guard("bdev_jraid_delete", || {
        let req = Request(req);
        let p: NameParams = match parse(params) {
            Ok(p) => p,
            Err(e) => return req.invalid(&e),
        };
        if bdev::find_volume(&p.name).is_none() {
            return req.error(-19, &format!("no jraid volume named {}", p.name));
        }
        let name = cstring(&p.name);
        let arg = Box::into_raw(Box::new(req));
        // SAFETY: NUL-terminated name; our static module; `unregister_done` takes `arg` back.
        let rc = unsafe {
            sys::spdk_bdev_unregister_by_name(
                name.as_ptr(),
                super::module_ptr(),
                Some(unregister_done),
                arg as *mut c_void,
            )
        };
        if rc != 0 {
            // SAFETY: SPDK refused, so the callback will not run: `arg` is ours again.
            let req = unsafe { Box::from_raw(arg) };
            req.error(rc, &format!("cannot delete {}: error {rc}", p.name));
        }
    })
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct GetParams {
    #[serde(default)]
    name: Option<String>,
}

unsafe extern "C" fn rpc_get_bdevs(
    req: *mut sys::spdk_jsonrpc_request,
    params: *const sys::spdk_json_val,
) {
    guard("bdev_jraid_get_bdevs", || {
        let req = Request(req);
        let p: GetParams = if params.is_null() {
            GetParams::default()
        } else {
            match parse(params) {
                Ok(p) => p,
                Err(e) => return req.invalid(&e),
            }
        };
        let vols = bdev::registry().volumes.clone();
        let list: Vec<Value> = vols
            .iter()
            .filter(|v| p.name.as_ref().is_none_or(|n| *n == v.name))
            .map(|v| v.info())
            .collect();
        if let Some(n) = &p.name {
            if list.is_empty() {
                return req.error(-19, &format!("no jraid volume named {n}"));
            }
        }
        req.result(&Value::Array(list));
    })
}

/// Parameters of `bdev_jraid_add_base_bdev`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddBaseParams {
    name: String,
    base_bdev: String,
    #[serde(default)]
    bandwidth_mb: Option<u64>,
    #[serde(default)]
    window: Option<usize>,
}

unsafe extern "C" fn rpc_add_base_bdev(
    req: *mut sys::spdk_jsonrpc_request,
    params: *const sys::spdk_json_val,
) {
    guard("bdev_jraid_add_base_bdev", || {
        let req = Request(req);
        let p: AddBaseParams = match parse(params) {
            Ok(p) => p,
            Err(e) => return req.invalid(&e),
        };
        let Some(v) = bdev::find_volume(&p.name) else {
            return req.error(-19, &format!("no jraid volume named {}", p.name));
        };
        let opts = match pass_opts(p.window, super::rebuild::DEFAULT_WINDOW, p.bandwidth_mb) {
            Ok(o) => o,
            Err(e) => return req.invalid(&e),
        };
        super::rebuild::add_base_bdev(
            v,
            p.base_bdev,
            opts,
            Box::new(move |r| match r {
                Ok(()) => req.result(&Value::Bool(true)),
                Err((code, msg)) => req.error(code, &msg),
            }),
        );
    })
}

/// Parameters of `bdev_jraid_scrub`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScrubParams {
    name: String,
    #[serde(default)]
    repair: bool,
    #[serde(default)]
    window: Option<usize>,
    #[serde(default)]
    bandwidth_mb: Option<u64>,
}

unsafe extern "C" fn rpc_scrub(
    req: *mut sys::spdk_jsonrpc_request,
    params: *const sys::spdk_json_val,
) {
    guard("bdev_jraid_scrub", || {
        let req = Request(req);
        let p: ScrubParams = match parse(params) {
            Ok(p) => p,
            Err(e) => return req.invalid(&e),
        };
        let Some(v) = bdev::find_volume(&p.name) else {
            return req.error(-19, &format!("no jraid volume named {}", p.name));
        };
        let opts = match pass_opts(p.window, 2 * super::rebuild::DEFAULT_WINDOW, p.bandwidth_mb) {
            Ok(o) => o,
            Err(e) => return req.invalid(&e),
        };
        match super::scrub::scrub(&v, p.repair, opts) {
            Ok(()) => req.result(&Value::Bool(true)),
            Err((code, msg)) => req.error(code, &msg),
        }
    })
}

/// Parameters of `bdev_jraid_set_journal`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetJournalParams {
    name: String,
    journal_bdev: String,
    #[serde(default)]
    window: Option<usize>,
    #[serde(default)]
    bandwidth_mb: Option<u64>,
}

unsafe extern "C" fn rpc_set_journal(
    req: *mut sys::spdk_jsonrpc_request,
    params: *const sys::spdk_json_val,
) {
    guard("bdev_jraid_set_journal", || {
        let req = Request(req);
        let p: SetJournalParams = match parse(params) {
            Ok(p) => p,
            Err(e) => return req.invalid(&e),
        };
        if p.journal_bdev.is_empty() {
            return req.invalid("journal_bdev must not be empty");
        }
        let opts = match pass_opts(p.window, 2 * super::rebuild::DEFAULT_WINDOW, p.bandwidth_mb) {
            Ok(o) => o,
            Err(e) => return req.invalid(&e),
        };
        let answer: super::set_journal::SetDone = Box::new(move |r| match r {
            Ok(()) => req.result(&Value::Bool(true)),
            Err((code, msg)) => req.error(code, &msg),
        });
        match bdev::find_volume(&p.name) {
            Some(v) => super::set_journal::set_journal(v, p.journal_bdev, opts, answer),
            None => super::set_journal::set_journal_waiting(p.name, p.journal_bdev, answer),
        }
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OptionsParams {
    #[serde(default)]
    recovery_window: Option<usize>,
    #[serde(default)]
    recovery_bandwidth_mb: Option<u64>,
    #[serde(default)]
    recovery_online: Option<bool>,
    #[serde(default)]
    init_window: Option<usize>,
    #[serde(default)]
    init_bandwidth_mb: Option<u64>,
    #[serde(default)]
    xor_kernel: Option<String>,
}

/// `bdev_jraid_set_options`: module-wide settings (whether a volume serves I/O while it
/// resyncs after a crash, the limits of that resync and of the initial parity pass, the XOR
/// kernel: see [`xor`]);
/// allowed at startup (in a JSON config, before the bdevs examine finds) and at runtime (a
/// running resync follows).
unsafe extern "C" fn rpc_set_options(
    req: *mut sys::spdk_jsonrpc_request,
    params: *const sys::spdk_json_val,
) {
    guard("bdev_jraid_set_options", || {
        let req = Request(req);
        let p: OptionsParams = match parse(params) {
            Ok(p) => p,
            Err(e) => return req.invalid(&e),
        };
        let (window, mb) = create::recovery_limits();
        let opts = match pass_opts(
            Some(p.recovery_window.unwrap_or(window)),
            window,
            Some(p.recovery_bandwidth_mb.unwrap_or(mb)),
        ) {
            Ok(o) => o,
            Err(e) => return req.invalid(&format!("recovery_{e}")),
        };
        let xor_kernel = match p.xor_kernel.as_deref().map(xor::Setting::parse) {
            None => None,
            Some(Some(k)) => Some(k),
            Some(None) => {
                return req.invalid("xor_kernel must be \"auto\", \"isal\" or \"native\"")
            }
        };
        let (iw, imb) = create::init_limits();
        let init = match pass_opts(
            Some(p.init_window.unwrap_or(iw)),
            iw,
            Some(p.init_bandwidth_mb.unwrap_or(imb)),
        ) {
            Ok(o) => o,
            Err(e) => return req.invalid(&format!("init_{e}")),
        };
        create::set_recovery_limits(opts.window, opts.bandwidth_mb);
        create::set_init_limits(init.window, init.bandwidth_mb);
        if let Some(on) = p.recovery_online {
            create::set_recovery_online(on);
        }
        if let Some(k) = xor_kernel {
            xor::set(k);
        }
        req.result(&Value::Bool(true));
    })
}

/// Register the RPC methods (from the load-time constructor).
pub(crate) fn register() {
    // SAFETY: static NUL-terminated name; the handler matches SPDK's type.
    unsafe {
        sys::spdk_rpc_register_method(
            c"bdev_jraid_set_options".as_ptr(),
            Some(rpc_set_options),
            sys::SPDK_RPC_STARTUP | sys::SPDK_RPC_RUNTIME,
        )
    };
    let methods: [(&std::ffi::CStr, sys::spdk_rpc_method_handler); 6] = [
        (c"bdev_jraid_create", Some(rpc_create)),
        (c"bdev_jraid_delete", Some(rpc_delete)),
        (c"bdev_jraid_get_bdevs", Some(rpc_get_bdevs)),
        (c"bdev_jraid_add_base_bdev", Some(rpc_add_base_bdev)),
        (c"bdev_jraid_scrub", Some(rpc_scrub)),
        (c"bdev_jraid_set_journal", Some(rpc_set_journal)),
    ];
    for (name, f) in methods {
        // SAFETY: static NUL-terminated names; handlers match SPDK's type.
        unsafe { sys::spdk_rpc_register_method(name.as_ptr(), f, sys::SPDK_RPC_RUNTIME) };
    }
}
