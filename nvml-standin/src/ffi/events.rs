//! Event sets: XID errors from the scenario, delivered once per set.

use std::ffi::{c_uint, c_ulonglong};
use std::time::{Duration, Instant};

use nvml_wrapper_sys::bindings::*;

use super::{guard, out, with_device, with_state};
use crate::scenario::Feature;
use crate::state::{self, NOT_SUPPORTED, TIMEOUT};

/// What an A100 supports; only XID events are ever generated.
const SUPPORTED_EVENTS: c_ulonglong = (nvmlEventTypeSingleBitEccError
    | nvmlEventTypeDoubleBitEccError
    | nvmlEventTypePState
    | nvmlEventTypeXidCriticalError
    | nvmlEventTypeClock) as c_ulonglong;

/// How often a waiting caller looks for newly due events (and scenario changes).
const POLL: Duration = Duration::from_millis(20);

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetSupportedEventTypes(
    device: nvmlDevice_t,
    event_types: *mut c_ulonglong,
) -> nvmlReturn_t {
    with_device(device, |st, dev| {
        let event_types = unsafe { out(event_types) }?;
        st.physical(dev, Feature::Events)?;
        *event_types = SUPPORTED_EVENTS;
        Ok(())
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlEventSetCreate(set: *mut nvmlEventSet_t) -> nvmlReturn_t {
    with_state(false, |st| {
        let set = unsafe { out(set) }?;
        *set = st.create_event_set();
        Ok(())
    })
}

/// Like NVML, asking for a type the device cannot deliver is `NOT_SUPPORTED`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceRegisterEvents(
    device: nvmlDevice_t,
    event_types: c_ulonglong,
    set: nvmlEventSet_t,
) -> nvmlReturn_t {
    with_device(device, |st, dev| {
        st.physical(dev, Feature::Events)?;
        if event_types & !SUPPORTED_EVENTS != 0 {
            return Err(NOT_SUPPORTED);
        }
        st.register_events(set, dev.gpu, event_types)
    })
}

/// Polls without holding the lock, so other threads keep collecting while one waits.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlEventSetWait_v2(
    set: nvmlEventSet_t,
    data: *mut nvmlEventData_t,
    timeout_ms: c_uint,
) -> nvmlReturn_t {
    guard(|| {
        let data = unsafe { out(data) }?;
        let deadline = Instant::now() + Duration::from_millis(timeout_ms.into());
        loop {
            {
                let mut st = state::lock();
                st.ensure_initialized(false)?;
                if let Some(event) = st.take_xid_event(set)? {
                    *data = event;
                    return Ok(());
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(TIMEOUT);
            }
            std::thread::sleep(POLL.min(deadline - now));
        }
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlEventSetWait(
    set: nvmlEventSet_t,
    data: *mut nvmlEventData_t,
    timeout_ms: c_uint,
) -> nvmlReturn_t {
    unsafe { nvmlEventSetWait_v2(set, data, timeout_ms) }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlEventSetFree(set: nvmlEventSet_t) -> nvmlReturn_t {
    with_state(false, |st| st.free_event_set(set))
}
