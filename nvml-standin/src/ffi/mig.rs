//! MIG mode and MIG device handles.
//!
//! A MIG handle encodes its parent GPU and slot, so it stays decodable without a table;
//! [`State::decode`](crate::state::State::decode) rejects slots the scenario does not have.

use std::ffi::c_uint;

use nvml_wrapper_sys::bindings::*;

use super::{out, with_device};
use crate::scenario::Feature;
use crate::state::{Dev, INVALID_ARGUMENT, NOT_FOUND, NOT_SUPPORTED};

/// What an A100 reports as its maximum number of MIG devices.
const MAX_MIG_DEVICES: usize = 7;

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetMigMode(
    device: nvmlDevice_t,
    current: *mut c_uint,
    pending: *mut c_uint,
) -> nvmlReturn_t {
    with_device(device, |st, dev| {
        let current = unsafe { out(current) }?;
        let pending = unsafe { out(pending) }?;
        let gpu = st.physical(dev, Feature::Mig)?;
        let enabled = c_uint::from(gpu.mig.as_ref().is_some_and(|m| m.enabled));
        *current = enabled;
        *pending = enabled;
        Ok(())
    })
}

/// The capacity, not the number in use: callers probe each slot and skip `NOT_FOUND`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetMaxMigDeviceCount(
    device: nvmlDevice_t,
    count: *mut c_uint,
) -> nvmlReturn_t {
    with_device(device, |st, dev| {
        let count = unsafe { out(count) }?;
        let gpu = st.physical(dev, Feature::Mig)?;
        let configured = gpu.mig.as_ref().map_or(0, |m| m.instances.len());
        *count = configured.max(MAX_MIG_DEVICES) as c_uint;
        Ok(())
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetMigDeviceHandleByIndex(
    device: nvmlDevice_t,
    index: c_uint,
    mig_device: *mut nvmlDevice_t,
) -> nvmlReturn_t {
    with_device(device, |st, dev| {
        let mig_device = unsafe { out(mig_device) }?;
        if dev.mig.is_some() {
            return Err(INVALID_ARGUMENT);
        }
        let gpu = st.physical(dev, Feature::Mig)?;
        let slot = index as usize;
        if slot >= gpu.mig_instances().len() {
            return Err(NOT_FOUND);
        }
        *mig_device = Dev {
            gpu: dev.gpu,
            mig: Some(slot),
        }
        .handle();
        Ok(())
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceIsMigDeviceHandle(
    device: nvmlDevice_t,
    is_mig: *mut c_uint,
) -> nvmlReturn_t {
    with_device(device, |st, dev| {
        let is_mig = unsafe { out(is_mig) }?;
        st.target(dev)?;
        *is_mig = c_uint::from(dev.mig.is_some());
        Ok(())
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetDeviceHandleFromMigDeviceHandle(
    mig_device: nvmlDevice_t,
    device: *mut nvmlDevice_t,
) -> nvmlReturn_t {
    with_device(mig_device, |st, dev| {
        let device = unsafe { out(device) }?;
        if dev.mig.is_none() {
            return Err(INVALID_ARGUMENT);
        }
        st.target(dev)?;
        *device = Dev {
            gpu: dev.gpu,
            mig: None,
        }
        .handle();
        Ok(())
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetGpuInstanceId(
    device: nvmlDevice_t,
    id: *mut c_uint,
) -> nvmlReturn_t {
    with_device(device, |st, dev| {
        let id = unsafe { out(id) }?;
        let mig = st.target(dev)?.mig.ok_or(NOT_SUPPORTED)?;
        *id = mig.gpu_instance_id;
        Ok(())
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetComputeInstanceId(
    device: nvmlDevice_t,
    id: *mut c_uint,
) -> nvmlReturn_t {
    with_device(device, |st, dev| {
        let id = unsafe { out(id) }?;
        let mig = st.target(dev)?.mig.ok_or(NOT_SUPPORTED)?;
        *id = mig.compute_instance_id;
        Ok(())
    })
}
