//! Per-device readings: identity, utilization, memory, power, thermals, clocks, errors.

use std::ffi::{c_char, c_uint, c_ulonglong};

use nvml_wrapper_sys::bindings::*;

use super::{out, percent, to_u32, to_u64, with_device, write_str};
use crate::scenario::{Feature, Gpu, ThrottleReason, Value};
use crate::state::{Dev, INVALID_ARGUMENT, NOT_SUPPORTED, NvmlResult, State};

/// What NVML reports as the encoder/decoder sampling window, in microseconds.
const CODEC_SAMPLING_PERIOD_US: c_uint = 167_000;

/// A100's PCI device ID (upper 16 bits) and NVIDIA's vendor ID.
const PCI_DEVICE_ID: c_uint = 0x20B2_10DE;
const PCI_SUBSYSTEM_ID: c_uint = 0x147F_10DE;

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetIndex(
    device: nvmlDevice_t,
    index: *mut c_uint,
) -> nvmlReturn_t {
    with_device(device, |st, dev| {
        let index = unsafe { out(index) }?;
        if st.target(dev)?.mig.is_some() {
            return Err(NOT_SUPPORTED);
        }
        *index = dev.gpu as c_uint;
        Ok(())
    })
}

/// MIG devices are named `"<parent name> MIG <profile>"`, as NVML names them.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetName(
    device: nvmlDevice_t,
    name: *mut c_char,
    length: c_uint,
) -> nvmlReturn_t {
    with_device(device, |st, dev| {
        let target = st.target(dev)?;
        let text = match target.mig {
            Some(mig) => format!("{} MIG {}", target.gpu.name, mig.profile),
            None => target.gpu.name.clone(),
        };
        unsafe { write_str(name, length, &text) }
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetUUID(
    device: nvmlDevice_t,
    uuid: *mut c_char,
    length: c_uint,
) -> nvmlReturn_t {
    with_device(device, |st, dev| {
        let target = st.target(dev)?;
        let text = target.mig.map_or(&target.gpu.uuid, |m| &m.uuid);
        unsafe { write_str(uuid, length, text) }
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetPciInfo_v3(
    device: nvmlDevice_t,
    pci: *mut nvmlPciInfo_t,
) -> nvmlReturn_t {
    with_device(device, |st, dev| {
        let pci = unsafe { out(pci) }?;
        let target = st.target(dev)?;
        if target.mig.is_some() {
            return Err(NOT_SUPPORTED);
        }
        let addr = target.gpu.pci;
        // SAFETY: an all-zero nvmlPciInfo_t is valid (integers and char arrays).
        *pci = unsafe { std::mem::zeroed() };
        unsafe {
            write_str(
                pci.busId.as_mut_ptr(),
                pci.busId.len() as c_uint,
                &addr.bus_id(),
            )?;
            write_str(
                pci.busIdLegacy.as_mut_ptr(),
                pci.busIdLegacy.len() as c_uint,
                &addr.bus_id_legacy(),
            )?;
        }
        pci.domain = addr.domain;
        pci.bus = addr.bus;
        pci.device = addr.device;
        pci.pciDeviceId = PCI_DEVICE_ID;
        pci.pciSubSystemId = PCI_SUBSYSTEM_ID;
        Ok(())
    })
}

/// Same struct as v3 in nvml.h; kept for callers built against older headers.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetPciInfo_v2(
    device: nvmlDevice_t,
    pci: *mut nvmlPciInfo_t,
) -> nvmlReturn_t {
    unsafe { nvmlDeviceGetPciInfo_v3(device, pci) }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetMinorNumber(
    device: nvmlDevice_t,
    minor: *mut c_uint,
) -> nvmlReturn_t {
    with_device(device, |st, dev| {
        let minor = unsafe { out(minor) }?;
        let target = st.target(dev)?;
        if target.mig.is_some() {
            return Err(NOT_SUPPORTED);
        }
        *minor = target.gpu.minor_number.unwrap_or(dev.gpu as u32);
        Ok(())
    })
}

/// NVML reports both percentages in one call, so either feature being off disables it.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetUtilizationRates(
    device: nvmlDevice_t,
    utilization: *mut nvmlUtilization_t,
) -> nvmlReturn_t {
    with_device(device, |st, dev| {
        let utilization = unsafe { out(utilization) }?;
        let t = st.now();
        let gpu = st.physical(dev, Feature::Utilization)?;
        if !gpu.supports(Feature::MemoryUtilization) {
            return Err(NOT_SUPPORTED);
        }
        *utilization = nvmlUtilization_t {
            gpu: percent(gpu.utilization_gpu_percent.at(t)),
            memory: percent(gpu.utilization_memory_percent.at(t)),
        };
        Ok(())
    })
}

/// `(total, used)` of a GPU or MIG device, used clamped to total so free never underflows.
fn memory(st: &State, dev: Dev) -> NvmlResult<(u64, u64)> {
    let t = st.now();
    let target = st.target(dev)?;
    if !target.gpu.supports(Feature::Memory) {
        return Err(NOT_SUPPORTED);
    }
    let (total, used) = match target.mig {
        Some(mig) => (mig.memory_total_bytes, &mig.memory_used_bytes),
        None => (target.gpu.memory_total_bytes, &target.gpu.memory_used_bytes),
    };
    Ok((total, to_u64(used.at(t)).min(total)))
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetMemoryInfo(
    device: nvmlDevice_t,
    memory_out: *mut nvmlMemory_t,
) -> nvmlReturn_t {
    with_device(device, |st, dev| {
        let memory_out = unsafe { out(memory_out) }?;
        let (total, used) = memory(st, dev)?;
        *memory_out = nvmlMemory_t {
            total,
            free: total - used,
            used,
        };
        Ok(())
    })
}

/// Checks the struct version like NVML, so a caller with a mismatched header finds out.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetMemoryInfo_v2(
    device: nvmlDevice_t,
    memory_out: *mut nvmlMemory_v2_t,
) -> nvmlReturn_t {
    const VERSION: c_uint = (std::mem::size_of::<nvmlMemory_v2_t>() | (2 << 24)) as c_uint;
    with_device(device, |st, dev| {
        let memory_out = unsafe { out(memory_out) }?;
        if memory_out.version != VERSION {
            return Err(nvmlReturn_enum_NVML_ERROR_ARGUMENT_VERSION_MISMATCH);
        }
        let (total, used) = memory(st, dev)?;
        *memory_out = nvmlMemory_v2_t {
            version: VERSION,
            total,
            reserved: 0,
            free: total - used,
            used,
        };
        Ok(())
    })
}

/// Milliwatts, as NVML.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetPowerUsage(
    device: nvmlDevice_t,
    power: *mut c_uint,
) -> nvmlReturn_t {
    with_device(device, |st, dev| {
        let power = unsafe { out(power) }?;
        let t = st.now();
        let gpu = st.physical(dev, Feature::Power)?;
        *power = to_u32(gpu.power_usage_watts.at(t) * 1000.0);
        Ok(())
    })
}

fn power_limit(device: nvmlDevice_t, limit: *mut c_uint) -> nvmlReturn_t {
    with_device(device, |st, dev| {
        let limit = unsafe { out(limit) }?;
        let t = st.now();
        let gpu = st.physical(dev, Feature::PowerLimit)?;
        *limit = to_u32(gpu.power_limit_watts.at(t) * 1000.0);
        Ok(())
    })
}

/// Milliwatts. The simulated board has no separate management limit, so both limits agree.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetEnforcedPowerLimit(
    device: nvmlDevice_t,
    limit: *mut c_uint,
) -> nvmlReturn_t {
    power_limit(device, limit)
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetPowerManagementLimit(
    device: nvmlDevice_t,
    limit: *mut c_uint,
) -> nvmlReturn_t {
    power_limit(device, limit)
}

/// Millijoules since the epoch (or the scenario's own counter).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetTotalEnergyConsumption(
    device: nvmlDevice_t,
    energy: *mut c_ulonglong,
) -> nvmlReturn_t {
    with_device(device, |st, dev| {
        let energy = unsafe { out(energy) }?;
        st.physical(dev, Feature::Energy)?;
        *energy = to_u64(st.energy_joules(dev.gpu)? * 1000.0);
        Ok(())
    })
}

/// Only the GPU die sensor exists (`NVML_TEMPERATURE_GPU`), as in nvml.h.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetTemperature(
    device: nvmlDevice_t,
    sensor: nvmlTemperatureSensors_t,
    temp: *mut c_uint,
) -> nvmlReturn_t {
    with_device(device, |st, dev| {
        let temp = unsafe { out(temp) }?;
        if sensor != nvmlTemperatureSensors_enum_NVML_TEMPERATURE_GPU {
            return Err(INVALID_ARGUMENT);
        }
        let t = st.now();
        let gpu = st.physical(dev, Feature::Temperature)?;
        *temp = to_u32(gpu.temperature_celsius.at(t));
        Ok(())
    })
}

/// MHz. Graphics and video clocks follow the SM clock: the scenario has one core clock.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetClockInfo(
    device: nvmlDevice_t,
    clock_type: nvmlClockType_t,
    clock: *mut c_uint,
) -> nvmlReturn_t {
    with_device(device, |st, dev| {
        let clock = unsafe { out(clock) }?;
        let t = st.now();
        let gpu = st.physical(dev, Feature::Clocks)?;
        *clock = match clock_type {
            nvmlClockType_enum_NVML_CLOCK_GRAPHICS
            | nvmlClockType_enum_NVML_CLOCK_SM
            | nvmlClockType_enum_NVML_CLOCK_VIDEO => to_u32(gpu.sm_clock_mhz.at(t)),
            nvmlClockType_enum_NVML_CLOCK_MEM => to_u32(gpu.memory_clock_mhz.at(t)),
            _ => return Err(INVALID_ARGUMENT),
        };
        Ok(())
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetMaxClockInfo(
    device: nvmlDevice_t,
    clock_type: nvmlClockType_t,
    clock: *mut c_uint,
) -> nvmlReturn_t {
    with_device(device, |st, dev| {
        let clock = unsafe { out(clock) }?;
        let gpu = st.physical(dev, Feature::Clocks)?;
        *clock = match clock_type {
            nvmlClockType_enum_NVML_CLOCK_GRAPHICS
            | nvmlClockType_enum_NVML_CLOCK_SM
            | nvmlClockType_enum_NVML_CLOCK_VIDEO => gpu.max_sm_clock_mhz,
            nvmlClockType_enum_NVML_CLOCK_MEM => gpu.max_memory_clock_mhz,
            _ => return Err(INVALID_ARGUMENT),
        };
        Ok(())
    })
}

/// Percent plus NVML's sampling window; `value` picks the encoder or decoder reading.
fn codec_utilization(
    device: nvmlDevice_t,
    utilization: *mut c_uint,
    sampling_period_us: *mut c_uint,
    feature: Feature,
    value: fn(&Gpu) -> &Value,
) -> nvmlReturn_t {
    with_device(device, |st, dev| {
        let utilization = unsafe { out(utilization) }?;
        let sampling_period_us = unsafe { out(sampling_period_us) }?;
        let t = st.now();
        let gpu = st.physical(dev, feature)?;
        *utilization = percent(value(gpu).at(t));
        *sampling_period_us = CODEC_SAMPLING_PERIOD_US;
        Ok(())
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetEncoderUtilization(
    device: nvmlDevice_t,
    utilization: *mut c_uint,
    sampling_period_us: *mut c_uint,
) -> nvmlReturn_t {
    codec_utilization(
        device,
        utilization,
        sampling_period_us,
        Feature::EncoderUtilization,
        |g| &g.encoder_utilization_percent,
    )
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetDecoderUtilization(
    device: nvmlDevice_t,
    utilization: *mut c_uint,
    sampling_period_us: *mut c_uint,
) -> nvmlReturn_t {
    codec_utilization(
        device,
        utilization,
        sampling_period_us,
        Feature::DecoderUtilization,
        |g| &g.decoder_utilization_percent,
    )
}

fn throttle_reasons(
    device: nvmlDevice_t,
    reasons: *mut c_ulonglong,
    supported: bool,
) -> nvmlReturn_t {
    with_device(device, |st, dev| {
        let reasons = unsafe { out(reasons) }?;
        let t = st.now();
        let gpu = st.physical(dev, Feature::ThrottleReasons)?;
        *reasons = if supported {
            ThrottleReason::ALL_BITS
        } else {
            gpu.throttle_mask(t)
        };
        Ok(())
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetCurrentClocksThrottleReasons(
    device: nvmlDevice_t,
    reasons: *mut c_ulonglong,
) -> nvmlReturn_t {
    throttle_reasons(device, reasons, false)
}

/// The newer name (drivers ≥ 535) for the same bitmask.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetCurrentClocksEventReasons(
    device: nvmlDevice_t,
    reasons: *mut c_ulonglong,
) -> nvmlReturn_t {
    throttle_reasons(device, reasons, false)
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetSupportedClocksThrottleReasons(
    device: nvmlDevice_t,
    reasons: *mut c_ulonglong,
) -> nvmlReturn_t {
    throttle_reasons(device, reasons, true)
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetSupportedClocksEventReasons(
    device: nvmlDevice_t,
    reasons: *mut c_ulonglong,
) -> nvmlReturn_t {
    throttle_reasons(device, reasons, true)
}

/// One counter per error type; volatile and aggregate agree because the simulated driver
/// has never been reloaded.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetTotalEccErrors(
    device: nvmlDevice_t,
    error_type: nvmlMemoryErrorType_t,
    counter_type: nvmlEccCounterType_t,
    count: *mut c_ulonglong,
) -> nvmlReturn_t {
    with_device(device, |st, dev| {
        let count = unsafe { out(count) }?;
        if counter_type != nvmlEccCounterType_enum_NVML_VOLATILE_ECC
            && counter_type != nvmlEccCounterType_enum_NVML_AGGREGATE_ECC
        {
            return Err(INVALID_ARGUMENT);
        }
        let t = st.now();
        let gpu = st.physical(dev, Feature::Ecc)?;
        let value = match error_type {
            nvmlMemoryErrorType_enum_NVML_MEMORY_ERROR_TYPE_CORRECTED => &gpu.ecc_corrected_total,
            nvmlMemoryErrorType_enum_NVML_MEMORY_ERROR_TYPE_UNCORRECTED => {
                &gpu.ecc_uncorrected_total
            }
            _ => return Err(INVALID_ARGUMENT),
        };
        *count = to_u64(value.at(t));
        Ok(())
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetPcieReplayCounter(
    device: nvmlDevice_t,
    value: *mut c_uint,
) -> nvmlReturn_t {
    with_device(device, |st, dev| {
        let value = unsafe { out(value) }?;
        let t = st.now();
        let gpu = st.physical(dev, Feature::PcieReplay)?;
        *value = to_u32(gpu.pcie_replay_total.at(t));
        Ok(())
    })
}
