//! Process-wide state behind the C ABI: init refcount, the current scenario and its file,
//! opaque handles, energy counters and event sets.
//!
//! One mutex guards everything; NVML calls are short, so contention is not a concern, and a
//! single lock keeps "reload + read" atomic from a caller's point of view.

use std::collections::{BTreeMap, HashSet};
use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{LazyLock, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use nvml_wrapper_sys::bindings::*;

use crate::scenario::{Feature, Gpu, MigInstance, Scenario};

/// NVML's result type, so `?` can carry the return code.
pub type NvmlResult<T = ()> = Result<T, nvmlReturn_t>;

pub const SUCCESS: nvmlReturn_t = nvmlReturn_enum_NVML_SUCCESS;
pub const UNINITIALIZED: nvmlReturn_t = nvmlReturn_enum_NVML_ERROR_UNINITIALIZED;
pub const INVALID_ARGUMENT: nvmlReturn_t = nvmlReturn_enum_NVML_ERROR_INVALID_ARGUMENT;
pub const NOT_SUPPORTED: nvmlReturn_t = nvmlReturn_enum_NVML_ERROR_NOT_SUPPORTED;
pub const NOT_FOUND: nvmlReturn_t = nvmlReturn_enum_NVML_ERROR_NOT_FOUND;
pub const INSUFFICIENT_SIZE: nvmlReturn_t = nvmlReturn_enum_NVML_ERROR_INSUFFICIENT_SIZE;
pub const TIMEOUT: nvmlReturn_t = nvmlReturn_enum_NVML_ERROR_TIMEOUT;
pub const GPU_IS_LOST: nvmlReturn_t = nvmlReturn_enum_NVML_ERROR_GPU_IS_LOST;
pub const UNKNOWN: nvmlReturn_t = nvmlReturn_enum_NVML_ERROR_UNKNOWN;

/// The environment variable naming the scenario file.
pub const SCENARIO_ENV: &str = "GPUSCALE_NVML_SCENARIO";

/// How often an ordinary call may look at the scenario file's metadata.
const RECHECK: Duration = Duration::from_millis(200);

/// Energy is integrated in slices this long, so the counter does not depend on how often
/// it is read.
const ENERGY_SLICE_SECONDS: f64 = 0.05;

static STATE: LazyLock<Mutex<State>> = LazyLock::new(|| Mutex::new(State::new()));

/// Locks the global state. A poisoned lock is recovered: every mutation leaves the state
/// consistent, and a panic must not turn into a permanently broken library.
pub fn lock() -> MutexGuard<'static, State> {
    STATE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A decoded device handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dev {
    pub gpu: usize,
    /// Position in the parent's `mig.instances` for a MIG device handle.
    pub mig: Option<usize>,
}

impl Dev {
    /// Handles are `(gpu + 1) << 8 | slot`, slot 0 being the physical GPU: never null, and
    /// decodable without a table that could go stale on reload.
    pub fn handle(self) -> nvmlDevice_t {
        let slot = self.mig.map_or(0, |m| m + 1);
        std::ptr::without_provenance_mut(((self.gpu + 1) << 8) | slot)
    }
}

/// What a device handle points at, once validated and checked for a lost GPU.
pub struct Target<'a> {
    pub gpu: &'a Gpu,
    pub mig: Option<&'a MigInstance>,
}

#[derive(Debug, Clone, PartialEq)]
enum Seen {
    File(Option<SystemTime>, u64),
    Unreadable(String),
}

struct ScenarioFile {
    path: PathBuf,
    last_check: Option<Instant>,
    /// The last version looked at, loaded or not, so a broken file is reported once.
    seen: Option<Seen>,
}

#[derive(Default, Clone, Copy)]
struct Energy {
    integrated_until: f64,
    joules: f64,
}

/// One `nvmlEventSet_t`.
#[derive(Default)]
struct EventSet {
    /// GPU index → registered event type mask.
    registered: BTreeMap<usize, u64>,
    /// `(gpu, at_seconds bits, xid)` already handed out; survives reloads so a rewritten
    /// file does not replay old events.
    delivered: HashSet<(usize, u64, u64)>,
}

/// Event set handles live in their own range so a device handle passed by mistake is
/// rejected.
const EVENT_SET_BASE: usize = 0x5E7_0000;

pub struct State {
    refcount: u32,
    epoch: Option<Instant>,
    scenario: Option<Scenario>,
    file: Option<ScenarioFile>,
    energy: Vec<Energy>,
    event_sets: BTreeMap<usize, EventSet>,
    next_event_set: usize,
}

impl State {
    fn new() -> Self {
        let file = std::env::var_os(SCENARIO_ENV)
            .filter(|p| !p.is_empty())
            .map(|path: OsString| ScenarioFile {
                path: path.into(),
                last_check: None,
                seen: None,
            });
        Self {
            refcount: 0,
            epoch: None,
            scenario: None,
            file,
            energy: Vec::new(),
            event_sets: BTreeMap::new(),
            next_event_set: 1,
        }
    }

    /// Seconds since the first scenario was loaded: the time axis of every series.
    pub fn now(&self) -> f64 {
        self.epoch.map_or(0.0, |e| e.elapsed().as_secs_f64())
    }

    pub fn scenario(&self) -> NvmlResult<&Scenario> {
        self.scenario.as_ref().ok_or(UNINITIALIZED)
    }

    /// `nvmlInit*`: (re)load the scenario, then count one more user.
    pub fn init(&mut self) -> NvmlResult {
        self.refresh(true);
        let scenario = self.scenario.as_ref().ok_or(UNKNOWN)?;
        if let Some(error) = scenario.init_error {
            use crate::scenario::InitError;
            return Err(match error {
                InitError::DriverNotLoaded => nvmlReturn_enum_NVML_ERROR_DRIVER_NOT_LOADED,
                InitError::NoPermission => nvmlReturn_enum_NVML_ERROR_NO_PERMISSION,
                InitError::Unknown => UNKNOWN,
            });
        }
        self.refcount = self.refcount.saturating_add(1);
        Ok(())
    }

    /// `nvmlShutdown`: like NVML, only the last shutdown really tears down.
    pub fn shutdown(&mut self) -> NvmlResult {
        if self.refcount == 0 {
            return Err(UNINITIALIZED);
        }
        self.refcount -= 1;
        if self.refcount == 0 {
            self.event_sets.clear();
        }
        Ok(())
    }

    /// Every call but init goes through here: refuse before init, and pick up a changed
    /// scenario file at most every [`RECHECK`] (or always, with `force`).
    pub fn ensure_initialized(&mut self, force: bool) -> NvmlResult {
        if self.refcount == 0 || self.scenario.is_none() {
            return Err(UNINITIALIZED);
        }
        self.refresh(force);
        Ok(())
    }

    fn refresh(&mut self, force: bool) {
        let Some(file) = self.file.as_mut() else {
            if self.scenario.is_none() {
                self.install(Scenario::simulated_node());
            }
            return;
        };
        let now = Instant::now();
        if !force
            && file
                .last_check
                .is_some_and(|last| now.duration_since(last) < RECHECK)
        {
            return;
        }
        file.last_check = Some(now);
        let seen = match std::fs::metadata(&file.path) {
            Ok(meta) => Seen::File(meta.modified().ok(), meta.len()),
            Err(e) => Seen::Unreadable(e.to_string()),
        };
        if file.seen.as_ref() == Some(&seen) {
            return;
        }
        let loaded = match &seen {
            Seen::Unreadable(e) => Err(e.clone()),
            Seen::File(..) => std::fs::read_to_string(&file.path)
                .map_err(|e| e.to_string())
                .and_then(|text| Scenario::from_json(&text)),
        };
        let path = file.path.display().to_string();
        file.seen = Some(seen);
        match loaded {
            Ok(scenario) => self.install(scenario),
            Err(error) => {
                let consequence = if self.scenario.is_some() {
                    "keeping the previous scenario"
                } else {
                    "no previous scenario, so nvmlInit fails with NVML_ERROR_UNKNOWN"
                };
                // Not eprintln!: a closed stderr must not turn into a panic.
                let _ = writeln!(
                    std::io::stderr(),
                    "nvml-standin: scenario {path}: {error}; {consequence}"
                );
            }
        }
    }

    fn install(&mut self, scenario: Scenario) {
        self.epoch.get_or_insert_with(Instant::now);
        // Keep the counters of GPUs that still exist: energy must stay monotonic.
        self.energy.resize(scenario.gpus.len(), Energy::default());
        self.scenario = Some(scenario);
    }

    /// Validates an opaque device handle against the current scenario.
    pub fn decode(&self, device: nvmlDevice_t) -> NvmlResult<Dev> {
        let raw = device.addr();
        let gpu = (raw >> 8).checked_sub(1).ok_or(INVALID_ARGUMENT)?;
        let slot = raw & 0xFF;
        let g = self.scenario()?.gpus.get(gpu).ok_or(INVALID_ARGUMENT)?;
        let mig = match slot {
            0 => None,
            s if s <= g.mig_instances().len() => Some(s - 1),
            _ => return Err(INVALID_ARGUMENT),
        };
        Ok(Dev { gpu, mig })
    }

    /// The GPU or MIG device behind a handle, unless its GPU has been lost.
    pub fn target(&self, dev: Dev) -> NvmlResult<Target<'_>> {
        let gpu = self.scenario()?.gpus.get(dev.gpu).ok_or(INVALID_ARGUMENT)?;
        if gpu.is_lost(self.now()) {
            return Err(GPU_IS_LOST);
        }
        let mig = match dev.mig {
            Some(m) => Some(gpu.mig_instances().get(m).ok_or(INVALID_ARGUMENT)?),
            None => None,
        };
        Ok(Target { gpu, mig })
    }

    /// A physical GPU for a query MIG devices do not answer, checking that the scenario
    /// did not switch `feature` off.
    pub fn physical(&self, dev: Dev, feature: Feature) -> NvmlResult<&Gpu> {
        let target = self.target(dev)?;
        if target.mig.is_some() || !target.gpu.supports(feature) {
            return Err(NOT_SUPPORTED);
        }
        Ok(target.gpu)
    }

    /// Total energy in joules: the scenario's own counter, or the integral of power since
    /// the epoch.
    pub fn energy_joules(&mut self, gpu_index: usize) -> NvmlResult<f64> {
        let t = self.now();
        let Self {
            scenario, energy, ..
        } = self;
        let gpu = scenario
            .as_ref()
            .and_then(|s| s.gpus.get(gpu_index))
            .ok_or(INVALID_ARGUMENT)?;
        if let Some(explicit) = &gpu.energy_joules {
            return Ok(explicit.at(t));
        }
        let power = &gpu.power_usage_watts;
        let acc = energy.get_mut(gpu_index).ok_or(INVALID_ARGUMENT)?;
        let span = t - acc.integrated_until;
        if span > 0.0 {
            let slices = (span / ENERGY_SLICE_SECONDS).ceil().clamp(1.0, 1e6) as u32;
            let dt = span / f64::from(slices);
            let mut from = acc.integrated_until;
            let mut joules = 0.0;
            for _ in 0..slices {
                let to = from + dt;
                joules += 0.5 * (power.at(from).max(0.0) + power.at(to).max(0.0)) * dt;
                from = to;
            }
            acc.joules += joules;
            acc.integrated_until = t;
        }
        Ok(acc.joules)
    }

    pub fn create_event_set(&mut self) -> nvmlEventSet_t {
        let id = self.next_event_set;
        self.next_event_set += 1;
        self.event_sets.insert(id, EventSet::default());
        std::ptr::without_provenance_mut(EVENT_SET_BASE + id)
    }

    fn event_set_id(set: nvmlEventSet_t) -> NvmlResult<usize> {
        set.addr()
            .checked_sub(EVENT_SET_BASE)
            .filter(|id| *id > 0)
            .ok_or(INVALID_ARGUMENT)
    }

    pub fn free_event_set(&mut self, set: nvmlEventSet_t) -> NvmlResult {
        let id = Self::event_set_id(set)?;
        self.event_sets
            .remove(&id)
            .map(|_| ())
            .ok_or(INVALID_ARGUMENT)
    }

    pub fn register_events(&mut self, set: nvmlEventSet_t, gpu: usize, mask: u64) -> NvmlResult {
        let id = Self::event_set_id(set)?;
        let entry = self.event_sets.get_mut(&id).ok_or(INVALID_ARGUMENT)?;
        *entry.registered.entry(gpu).or_default() |= mask;
        Ok(())
    }

    /// The earliest due XID event not yet delivered to `set`, marked as delivered.
    ///
    /// Events whose time passed before registration are still delivered: a test that
    /// rewrites the scenario with an event "now" must see it regardless of timing.
    pub fn take_xid_event(&mut self, set: nvmlEventSet_t) -> NvmlResult<Option<nvmlEventData_t>> {
        let id = Self::event_set_id(set)?;
        let t = self.now();
        let scenario = self.scenario.as_ref().ok_or(UNINITIALIZED)?;
        let entry = self.event_sets.get_mut(&id).ok_or(INVALID_ARGUMENT)?;
        let mut best: Option<(f64, usize, u64)> = None;
        for (&gpu_index, &mask) in &entry.registered {
            if mask & u64::from(nvmlEventTypeXidCriticalError) == 0 {
                continue;
            }
            let Some(gpu) = scenario.gpus.get(gpu_index) else {
                continue;
            };
            for event in &gpu.xid_events {
                let key = (gpu_index, event.at_seconds.to_bits(), event.xid);
                if event.at_seconds <= t
                    && !entry.delivered.contains(&key)
                    && best.is_none_or(|(at, ..)| event.at_seconds < at)
                {
                    best = Some((event.at_seconds, gpu_index, event.xid));
                }
            }
        }
        Ok(best.map(|(at, gpu, xid)| {
            entry.delivered.insert((gpu, at.to_bits(), xid));
            nvmlEventData_t {
                device: Dev { gpu, mig: None }.handle(),
                eventType: u64::from(nvmlEventTypeXidCriticalError),
                eventData: xid,
                gpuInstanceId: u32::MAX,
                computeInstanceId: u32::MAX,
            }
        }))
    }
}
