//! The exported NVML C functions, grouped by concern in submodules.
//!
//! Every entry point runs inside [`guard`], so a panic becomes `NVML_ERROR_UNKNOWN` instead
//! of unwinding into C. The safety contract of each function is the one nvml.h documents
//! (valid, aligned out-pointers or null; buffers at least `length` bytes), which is why the
//! functions carry no `# Safety` section of their own.

// Patterns match nvml.h's constants under their C names, which are not upper case.
#![allow(non_upper_case_globals)]

use std::ffi::{c_char, c_uint};
use std::panic::{AssertUnwindSafe, catch_unwind};

use nvml_wrapper_sys::bindings::{nvmlDevice_t, nvmlReturn_t};

use crate::state::{
    self, Dev, INSUFFICIENT_SIZE, INVALID_ARGUMENT, NvmlResult, SUCCESS, State, UNKNOWN,
};

mod device;
mod events;
mod init;
mod mig;
mod processes;

/// Runs an entry point's body, turning `Err(code)` and panics into return codes.
fn guard(body: impl FnOnce() -> NvmlResult) -> nvmlReturn_t {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => SUCCESS,
        Ok(Err(code)) => code,
        Err(_) => UNKNOWN,
    }
}

/// For calls that need `nvmlInit` but no device. `force` re-checks the scenario file now.
fn with_state(force: bool, body: impl FnOnce(&mut State) -> NvmlResult) -> nvmlReturn_t {
    guard(|| {
        let mut st = state::lock();
        st.ensure_initialized(force)?;
        body(&mut st)
    })
}

/// For per-device calls: checks init, then the handle, then hands over the decoded device.
fn with_device(
    device: nvmlDevice_t,
    body: impl FnOnce(&mut State, Dev) -> NvmlResult,
) -> nvmlReturn_t {
    with_state(false, |st| {
        let dev = st.decode(device)?;
        body(st, dev)
    })
}

/// Borrows an out-parameter; null is `NVML_ERROR_INVALID_ARGUMENT`, as in NVML.
///
/// # Safety
/// `ptr` must be null or valid for writes of `T` for the returned lifetime.
unsafe fn out<'a, T>(ptr: *mut T) -> NvmlResult<&'a mut T> {
    unsafe { ptr.as_mut() }.ok_or(INVALID_ARGUMENT)
}

/// Copies `text` plus a NUL into a caller buffer of `length` bytes, refusing to truncate.
///
/// # Safety
/// `buf` must be null or valid for writes of `length` bytes.
unsafe fn write_str(buf: *mut c_char, length: c_uint, text: &str) -> NvmlResult {
    if buf.is_null() {
        return Err(INVALID_ARGUMENT);
    }
    let bytes = text.as_bytes();
    if bytes.len() >= length as usize {
        return Err(INSUFFICIENT_SIZE);
    }
    // SAFETY: the caller guarantees `length` writable bytes, and we write len + 1 <= length.
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr().cast::<c_char>(), buf, bytes.len());
        *buf.add(bytes.len()) = 0;
    }
    Ok(())
}

/// A reading rounded to an unsigned integer; negative readings become 0 rather than wrap.
fn to_u32(value: f64) -> c_uint {
    value.round().clamp(0.0, f64::from(u32::MAX)) as c_uint
}

fn to_u64(value: f64) -> u64 {
    value.round().max(0.0) as u64
}

/// Percentages are clamped to 0..=100, as NVML never reports more.
fn percent(value: f64) -> c_uint {
    to_u32(value.clamp(0.0, 100.0))
}
