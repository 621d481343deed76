//! JSON at the FFI edge: SPDK's parsed values to serde_json and back, uuids as text.
#![allow(unsafe_code)]

use std::ffi::c_void;

use serde_json::Value;
use spdk_sys as sys;

use super::ffi::cstring;

unsafe extern "C" fn append(ctx: *mut c_void, data: *const c_void, size: usize) -> i32 {
    super::ffi::guard("json append", || {
        // SAFETY: `ctx` is the Vec passed to spdk_json_write_begin by `to_value`; `data` holds
        // `size` bytes for the duration of the call.
        unsafe {
            let out = &mut *(ctx as *mut Vec<u8>);
            out.extend_from_slice(std::slice::from_raw_parts(data as *const u8, size));
        }
        0
    })
}

/// The JSON-RPC `params` SPDK parsed, as a serde value (`Null` when absent).
pub(crate) fn to_value(params: *const sys::spdk_json_val) -> Result<Value, String> {
    if params.is_null() {
        return Ok(Value::Null);
    }
    let mut out: Vec<u8> = Vec::new();
    // SAFETY: `append` matches spdk_json_write_cb and `out` outlives the writer, which is
    // ended before `out` is read; `params` is SPDK's parsed value for this request.
    unsafe {
        let w =
            sys::spdk_json_write_begin(Some(append), &mut out as *mut Vec<u8> as *mut c_void, 0);
        if w.is_null() {
            return Err("out of memory".into());
        }
        sys::spdk_json_write_val(w, params);
        sys::spdk_json_write_end(w);
    }
    serde_json::from_slice(&out).map_err(|e| format!("malformed parameters: {e}"))
}

/// Write `v` as the next value of `w`.
pub(crate) fn write_value(w: *mut sys::spdk_json_write_ctx, v: &Value) {
    let s = v.to_string();
    // SAFETY: `w` is a live writer SPDK handed us; `s` holds valid JSON of `s.len()` bytes.
    unsafe { sys::spdk_json_write_val_raw(w, s.as_ptr() as *const c_void, s.len()) };
}

/// Write `"name": v` into the object `w` is inside.
pub(crate) fn write_named(w: *mut sys::spdk_json_write_ctx, name: &str, v: &Value) {
    let n = cstring(name);
    // SAFETY: `w` is a live writer inside an object; `n` is NUL-terminated.
    unsafe { sys::spdk_json_write_name(w, n.as_ptr()) };
    write_value(w, v);
}

/// A uuid in the usual 8-4-4-4-12 form.
pub(crate) fn uuid_string(u: &[u8; 16]) -> String {
    let h: String = u.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Parse a uuid in the 8-4-4-4-12 form (dashes optional).
pub(crate) fn parse_uuid(s: &str) -> Option<[u8; 16]> {
    let hex: String = s.chars().filter(|&c| c != '-').collect();
    if hex.len() != 32 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let mut u = [0u8; 16];
    for (i, b) in u.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(u)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_round_trip() {
        let u = [
            0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 1, 2, 3, 4, 5, 6, 7, 8,
        ];
        let s = uuid_string(&u);
        assert_eq!(s, "12345678-9abc-def0-0102-030405060708");
        assert_eq!(parse_uuid(&s), Some(u));
        assert_eq!(parse_uuid("nope"), None);
    }
}
