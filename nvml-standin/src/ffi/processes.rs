//! Running compute processes and per-process utilization samples.

use std::ffi::c_uint;
use std::time::{SystemTime, UNIX_EPOCH};

use nvml_wrapper_sys::bindings::*;

use super::{out, percent, to_u64, with_device};
use crate::scenario::Feature;
use crate::state::{
    Dev, INSUFFICIENT_SIZE, INVALID_ARGUMENT, NOT_FOUND, NOT_SUPPORTED, NvmlResult, State,
};

/// NVML's "no MIG instance" marker in process records.
const NO_INSTANCE: c_uint = u32::MAX;

/// One process as the v2/v3 struct carries it; the v1 struct is a prefix of the same data.
fn processes(st: &State, dev: Dev) -> NvmlResult<Vec<nvmlProcessInfo_v2_t>> {
    let t = st.now();
    let target = st.target(dev)?;
    let gpu = target.gpu;
    if !gpu.supports(Feature::Processes) {
        return Err(NOT_SUPPORTED);
    }
    let instances = gpu.mig_instances();
    Ok(gpu
        .processes
        .iter()
        .filter_map(|p| {
            // A process's MIG instance only exists while MIG is on.
            let instance = p
                .mig_instance
                .and_then(|m| instances.get(m).map(|i| (m, i)));
            if dev.mig.is_some() && instance.map(|(m, _)| m) != dev.mig {
                return None;
            }
            Some(nvmlProcessInfo_v2_t {
                pid: p.pid,
                usedGpuMemory: to_u64(p.used_memory_bytes.at(t)),
                gpuInstanceId: instance.map_or(NO_INSTANCE, |(_, i)| i.gpu_instance_id),
                computeInstanceId: instance.map_or(NO_INSTANCE, |(_, i)| i.compute_instance_id),
            })
        })
        .collect())
}

/// NVML's sizing protocol: too small a count (including a null buffer with count 0) gets
/// `INSUFFICIENT_SIZE` and the needed count; otherwise the records and their number.
///
/// # Safety
/// `count` must be null or writable; `buf` null or valid for `*count` records.
unsafe fn fill<T>(count: *mut c_uint, buf: *mut T, items: Vec<T>) -> NvmlResult {
    let count = unsafe { out(count) }?;
    let needed = c_uint::try_from(items.len()).map_err(|_| INSUFFICIENT_SIZE)?;
    if *count < needed {
        *count = needed;
        return Err(INSUFFICIENT_SIZE);
    }
    if needed > 0 && buf.is_null() {
        return Err(INVALID_ARGUMENT);
    }
    for (i, item) in items.into_iter().enumerate() {
        // SAFETY: i < needed <= *count, the caller's buffer length.
        unsafe { buf.add(i).write(item) };
    }
    *count = needed;
    Ok(())
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetComputeRunningProcesses_v3(
    device: nvmlDevice_t,
    count: *mut c_uint,
    infos: *mut nvmlProcessInfo_t,
) -> nvmlReturn_t {
    with_device(device, |st, dev| {
        let list = processes(st, dev)?;
        unsafe { fill(count, infos, list) }
    })
}

/// Same record layout as v3 in nvml.h.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetComputeRunningProcesses_v2(
    device: nvmlDevice_t,
    count: *mut c_uint,
    infos: *mut nvmlProcessInfo_v2_t,
) -> nvmlReturn_t {
    unsafe { nvmlDeviceGetComputeRunningProcesses_v3(device, count, infos) }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetComputeRunningProcesses(
    device: nvmlDevice_t,
    count: *mut c_uint,
    infos: *mut nvmlProcessInfo_v1_t,
) -> nvmlReturn_t {
    with_device(device, |st, dev| {
        let list = processes(st, dev)?
            .into_iter()
            .map(|p| nvmlProcessInfo_v1_t {
                pid: p.pid,
                usedGpuMemory: p.usedGpuMemory,
            })
            .collect();
        unsafe { fill(count, infos, list) }
    })
}

/// NVML samples per-process utilization periodically; a caller passing the last timestamp
/// it saw gets nothing new until the next period.
const SAMPLE_PERIOD_US: u64 = 167_000;

/// The latest sample per process, stamped with the start of the current sampling period
/// (µs since the Unix epoch, as NVML's CPU timestamps). Like NVML, no sample newer than
/// `last_seen` is `NOT_FOUND`, and MIG devices do not support the query.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetProcessUtilization(
    device: nvmlDevice_t,
    utilization: *mut nvmlProcessUtilizationSample_t,
    count: *mut c_uint,
    last_seen: u64,
) -> nvmlReturn_t {
    with_device(device, |st, dev| {
        let t = st.now();
        let gpu = st.physical(dev, Feature::ProcessUtilization)?;
        let now_us = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
        let now_us = now_us - now_us % SAMPLE_PERIOD_US;
        if gpu.processes.is_empty() || now_us <= last_seen {
            if count.is_null() {
                return Err(INVALID_ARGUMENT);
            }
            return Err(NOT_FOUND);
        }
        let samples: Vec<_> = gpu
            .processes
            .iter()
            .map(|p| nvmlProcessUtilizationSample_t {
                pid: p.pid,
                timeStamp: now_us,
                smUtil: percent(p.sm_util_percent.at(t)),
                memUtil: percent(p.mem_util_percent.at(t)),
                encUtil: 0,
                decUtil: 0,
            })
            .collect();
        if utilization.is_null() {
            let count = unsafe { out(count) }?;
            *count = samples.len() as c_uint;
            return Err(INSUFFICIENT_SIZE);
        }
        unsafe { fill(count, utilization, samples) }
    })
}
