//! Library lifecycle, system queries and device enumeration.

use std::ffi::{CStr, c_char, c_int, c_uint};

use nvml_wrapper_sys::bindings::*;

use super::{guard, out, with_state, write_str};
use crate::scenario::Pci;
use crate::state::{self, Dev, INVALID_ARGUMENT, NOT_FOUND, NvmlResult, State};

fn init() -> nvmlReturn_t {
    guard(|| state::lock().init())
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlInit_v2() -> nvmlReturn_t {
    init()
}

/// The pre-v2 name; old tools still look it up.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlInit() -> nvmlReturn_t {
    init()
}

/// Flags (no GPUs / no attach) change nothing for simulated GPUs.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlInitWithFlags(_flags: c_uint) -> nvmlReturn_t {
    init()
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlShutdown() -> nvmlReturn_t {
    guard(|| state::lock().shutdown())
}

/// Static strings, as NVML's: callers never free them.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlErrorString(result: nvmlReturn_t) -> *const c_char {
    error_string(result).as_ptr()
}

fn error_string(result: nvmlReturn_t) -> &'static CStr {
    match result {
        nvmlReturn_enum_NVML_SUCCESS => c"Success",
        nvmlReturn_enum_NVML_ERROR_UNINITIALIZED => c"Uninitialized",
        nvmlReturn_enum_NVML_ERROR_INVALID_ARGUMENT => c"Invalid Argument",
        nvmlReturn_enum_NVML_ERROR_NOT_SUPPORTED => c"Not Supported",
        nvmlReturn_enum_NVML_ERROR_NO_PERMISSION => c"Insufficient Permissions",
        nvmlReturn_enum_NVML_ERROR_ALREADY_INITIALIZED => c"Already Initialized",
        nvmlReturn_enum_NVML_ERROR_NOT_FOUND => c"Not Found",
        nvmlReturn_enum_NVML_ERROR_INSUFFICIENT_SIZE => c"Insufficient Size",
        nvmlReturn_enum_NVML_ERROR_INSUFFICIENT_POWER => c"Insufficient External Power",
        nvmlReturn_enum_NVML_ERROR_DRIVER_NOT_LOADED => c"Driver Not Loaded",
        nvmlReturn_enum_NVML_ERROR_TIMEOUT => c"Timeout",
        nvmlReturn_enum_NVML_ERROR_IRQ_ISSUE => c"Interrupt Request Issue",
        nvmlReturn_enum_NVML_ERROR_LIBRARY_NOT_FOUND => c"NVML Shared Library Not Found",
        nvmlReturn_enum_NVML_ERROR_FUNCTION_NOT_FOUND => c"Function Not Found",
        nvmlReturn_enum_NVML_ERROR_CORRUPTED_INFOROM => c"Corrupted infoROM",
        nvmlReturn_enum_NVML_ERROR_GPU_IS_LOST => c"GPU is lost",
        nvmlReturn_enum_NVML_ERROR_RESET_REQUIRED => c"GPU requires restart",
        nvmlReturn_enum_NVML_ERROR_OPERATING_SYSTEM => {
            c"The operating system has blocked the request."
        }
        nvmlReturn_enum_NVML_ERROR_LIB_RM_VERSION_MISMATCH => {
            c"RM has detected an NVML/RM version mismatch."
        }
        nvmlReturn_enum_NVML_ERROR_IN_USE => c"In use by another client",
        nvmlReturn_enum_NVML_ERROR_MEMORY => c"Insufficient Memory",
        nvmlReturn_enum_NVML_ERROR_NO_DATA => c"No data",
        nvmlReturn_enum_NVML_ERROR_INSUFFICIENT_RESOURCES => c"Insufficient resources",
        nvmlReturn_enum_NVML_ERROR_ARGUMENT_VERSION_MISMATCH => c"Argument version mismatch",
        nvmlReturn_enum_NVML_ERROR_DEPRECATED => c"Deprecated",
        nvmlReturn_enum_NVML_ERROR_NOT_READY => c"Not ready",
        nvmlReturn_enum_NVML_ERROR_GPU_NOT_FOUND => c"GPU not found",
        nvmlReturn_enum_NVML_ERROR_INVALID_STATE => c"Invalid state",
        _ => c"Unknown Error",
    }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlSystemGetDriverVersion(
    version: *mut c_char,
    length: c_uint,
) -> nvmlReturn_t {
    with_state(false, |st| unsafe {
        write_str(version, length, &st.scenario()?.driver_version)
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlSystemGetNVMLVersion(
    version: *mut c_char,
    length: c_uint,
) -> nvmlReturn_t {
    with_state(false, |st| unsafe {
        write_str(version, length, &st.scenario()?.nvml_version)
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlSystemGetCudaDriverVersion(version: *mut c_int) -> nvmlReturn_t {
    with_state(false, |st| {
        let version = unsafe { out(version) }?;
        *version = st.scenario()?.cuda_driver_version;
        Ok(())
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlSystemGetCudaDriverVersion_v2(version: *mut c_int) -> nvmlReturn_t {
    unsafe { nvmlSystemGetCudaDriverVersion(version) }
}

/// Forces a scenario re-check: enumeration is where a test expects a changed node to show.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetCount_v2(count: *mut c_uint) -> nvmlReturn_t {
    with_state(true, |st| {
        let count = unsafe { out(count) }?;
        *count = st.scenario()?.gpus.len() as c_uint;
        Ok(())
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetCount(count: *mut c_uint) -> nvmlReturn_t {
    unsafe { nvmlDeviceGetCount_v2(count) }
}

/// Succeeds even for a lost GPU, like NVML: the loss shows on the first query.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetHandleByIndex_v2(
    index: c_uint,
    device: *mut nvmlDevice_t,
) -> nvmlReturn_t {
    with_state(false, |st| {
        let device = unsafe { out(device) }?;
        let gpu = index as usize;
        if gpu >= st.scenario()?.gpus.len() {
            return Err(INVALID_ARGUMENT);
        }
        *device = Dev { gpu, mig: None }.handle();
        Ok(())
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetHandleByIndex(
    index: c_uint,
    device: *mut nvmlDevice_t,
) -> nvmlReturn_t {
    unsafe { nvmlDeviceGetHandleByIndex_v2(index, device) }
}

/// Finds GPUs and MIG devices alike, as NVML does for `GPU-` and `MIG-` UUIDs.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetHandleByUUID(
    uuid: *const c_char,
    device: *mut nvmlDevice_t,
) -> nvmlReturn_t {
    with_state(false, |st| {
        let device = unsafe { out(device) }?;
        let uuid = unsafe { c_str(uuid) }?;
        *device = find(st, |gpu, mig| match mig {
            Some(m) => m.uuid.as_bytes() == uuid,
            None => gpu.uuid.as_bytes() == uuid,
        })?
        .handle();
        Ok(())
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetHandleByPciBusId_v2(
    pci_bus_id: *const c_char,
    device: *mut nvmlDevice_t,
) -> nvmlReturn_t {
    with_state(false, |st| {
        let device = unsafe { out(device) }?;
        let text =
            std::str::from_utf8(unsafe { c_str(pci_bus_id) }?).map_err(|_| INVALID_ARGUMENT)?;
        let wanted = Pci::parse(text).ok_or(INVALID_ARGUMENT)?;
        *device = find(st, |gpu, mig| mig.is_none() && gpu.pci == wanted)?.handle();
        Ok(())
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetHandleByPciBusId(
    pci_bus_id: *const c_char,
    device: *mut nvmlDevice_t,
) -> nvmlReturn_t {
    unsafe { nvmlDeviceGetHandleByPciBusId_v2(pci_bus_id, device) }
}

/// Reads a caller's C string.
///
/// # Safety
/// `ptr` must be null or point to a NUL-terminated string.
unsafe fn c_str<'a>(ptr: *const c_char) -> NvmlResult<&'a [u8]> {
    if ptr.is_null() {
        return Err(INVALID_ARGUMENT);
    }
    Ok(unsafe { CStr::from_ptr(ptr) }.to_bytes())
}

/// The first GPU or MIG device matching `pred`.
fn find(
    st: &State,
    pred: impl Fn(&crate::scenario::Gpu, Option<&crate::scenario::MigInstance>) -> bool,
) -> NvmlResult<Dev> {
    for (gpu_index, gpu) in st.scenario()?.gpus.iter().enumerate() {
        if pred(gpu, None) {
            return Ok(Dev {
                gpu: gpu_index,
                mig: None,
            });
        }
        for (m, instance) in gpu.mig_instances().iter().enumerate() {
            if pred(gpu, Some(instance)) {
                return Ok(Dev {
                    gpu: gpu_index,
                    mig: Some(m),
                });
            }
        }
    }
    Err(NOT_FOUND)
}
