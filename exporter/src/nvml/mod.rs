//! Reads GPUs through NVML (`nvml-wrapper`), the only GPU path the exporter has.
//!
//! Loading and initialising NVML can fail (no library, no driver); the exporter must then stay
//! up, say so through `gpuscale_exporter_nvml_up 0`, log one line, and retry with backoff so a
//! driver that appears later is picked up without a restart.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsStr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nvml_wrapper::bitmasks::event::EventTypes;
use nvml_wrapper::enum_wrappers::device::{Clock, EccCounter, MemoryError, TemperatureSensor};
use nvml_wrapper::enums::device::UsedGpuMemory;
use nvml_wrapper::enums::event::XidError;
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::struct_wrappers::device::ProcessUtilizationSample;
use nvml_wrapper::{Device, EventSet, Nvml};

use crate::snapshot::{GpuReading, MigReading, ProcessReading, mig_profile_from_name};

/// What one cycle read from NVML.
#[derive(Debug, Default)]
pub struct NvmlReading {
    pub nvml_up: bool,
    pub driver_version: Option<String>,
    pub cuda_version: Option<String>,
    pub gpus: Vec<GpuReading>,
}

/// An initialised NVML. The handle is leaked on purpose: event sets and devices borrow it
/// for `'static`, so they can live across cycles; at most one is leaked per driver reload.
struct Session {
    nvml: &'static Nvml,
    events: Option<EventSet<'static>>,
    /// UUIDs of GPUs whose XID events this session receives.
    xid_registered: HashSet<String>,
    driver_version: Option<String>,
    cuda_version: Option<String>,
}

/// Static facts about a GPU, read once per UUID.
#[derive(Debug, Clone)]
struct Identity {
    uuid: String,
    model: String,
    pci_bus_id: Option<String>,
    minor_number: Option<u32>,
}

#[derive(Debug, Default, Clone)]
struct XidCounts {
    by_code: BTreeMap<u64, u64>,
    last: Option<u64>,
}

/// The GPU is gone from the bus; the caller reports it as `gpu_up 0`.
struct Lost;

/// Owns the NVML session and everything that must survive between cycles.
pub struct NvmlSource {
    library: Option<PathBuf>,
    session: Option<Session>,
    retry_at: Instant,
    backoff: Duration,
    min_backoff: Duration,
    max_backoff: Duration,
    /// The last init error logged, so a down NVML logs one line, not one per retry.
    logged_down: Option<String>,
    /// (uuid, field) pairs already logged as unsupported or failing.
    logged_fields: HashSet<(String, &'static str)>,
    identities: HashMap<u32, Identity>,
    xid: HashMap<String, XidCounts>,
    /// How far back per-process utilization samples are averaged: at least a second, so a
    /// short collection interval still sees a sample of every busy process.
    process_window: Duration,
}

impl NvmlSource {
    /// `library`: explicit path of `libnvidia-ml`, or `None` for the system's
    /// `libnvidia-ml.so.1`. `min_backoff`/`max_backoff` bound the retry interval while down.
    ///
    /// Never fails: NVML trouble (no library, no driver) is reported as data
    /// (`gpuscale_exporter_nvml_up 0`) and retried, because a DaemonSet pod that crash-loops
    /// on a node whose driver is still installing helps nobody.
    pub fn new(library: Option<PathBuf>, min_backoff: Duration, max_backoff: Duration) -> Self {
        Self {
            library,
            session: None,
            retry_at: Instant::now(),
            backoff: min_backoff,
            min_backoff,
            max_backoff: max_backoff.max(min_backoff),
            logged_down: None,
            logged_fields: HashSet::new(),
            identities: HashMap::new(),
            xid: HashMap::new(),
            process_window: min_backoff.max(Duration::from_secs(1)),
        }
    }

    /// One collection cycle. Failed NVML calls are counted into `errors` by field.
    pub fn collect(&mut self, errors: &mut BTreeMap<&'static str, u64>) -> NvmlReading {
        if self.session.is_none() {
            if Instant::now() < self.retry_at {
                return NvmlReading::default();
            }
            self.try_init();
        }
        let Some(session) = self.session.as_ref() else {
            return NvmlReading::default();
        };
        let nvml = session.nvml;
        let count = match nvml.device_count() {
            Ok(count) => count,
            Err(err) => {
                *errors.entry("device_count").or_default() += 1;
                self.go_down(&format!("NVML stopped answering: {err}"));
                return NvmlReading::default();
            }
        };
        let driver_version = session.driver_version.clone();
        let cuda_version = session.cuda_version.clone();
        self.drain_xid_events(errors);

        let mut gpus = Vec::with_capacity(count as usize);
        for index in 0..count {
            let reading = match nvml.device_by_index(index) {
                Ok(device) => self.read_gpu(index, &device, errors),
                Err(err) => {
                    *errors.entry("device_handle").or_default() += 1;
                    self.log_field_once(&format!("gpu{index}"), "device_handle", &err);
                    self.lost_reading(index)
                }
            };
            gpus.push(reading);
        }
        NvmlReading {
            nvml_up: true,
            driver_version,
            cuda_version,
            gpus,
        }
    }

    fn try_init(&mut self) {
        let result = match &self.library {
            Some(path) => Nvml::builder().lib_path(path.as_os_str()).init(),
            None => Nvml::builder()
                .lib_path(OsStr::new("libnvidia-ml.so.1"))
                .init(),
        };
        match result {
            Ok(nvml) => {
                let nvml: &'static Nvml = Box::leak(Box::new(nvml));
                let driver_version = nvml.sys_driver_version().ok();
                let cuda_version = nvml.sys_cuda_driver_version().ok().map(|v| {
                    // NVML encodes CUDA 12.4 as 12040.
                    format!("{}.{}", v / 1000, (v % 1000) / 10)
                });
                let (events, xid_registered) = register_xid_events(nvml);
                tracing::info!(
                    library = %self.library_name(),
                    driver_version = driver_version.as_deref().unwrap_or("unknown"),
                    xid_gpus = xid_registered.len(),
                    "NVML initialised"
                );
                self.session = Some(Session {
                    nvml,
                    events,
                    xid_registered,
                    driver_version,
                    cuda_version,
                });
                self.backoff = self.min_backoff;
                self.logged_down = None;
            }
            Err(err) => self.go_down(&init_error_text(&err)),
        }
    }

    fn go_down(&mut self, why: &str) {
        if self.session.take().is_some() || self.logged_down.as_deref() != Some(why) {
            tracing::error!(
                library = %self.library_name(),
                retry_max_seconds = self.max_backoff.as_secs_f64(),
                "NVML unavailable: {why}; reporting gpuscale_exporter_nvml_up 0 and retrying"
            );
            self.logged_down = Some(why.to_string());
        }
        self.retry_at = Instant::now() + self.backoff;
        self.backoff = (self.backoff * 2).min(self.max_backoff);
    }

    fn library_name(&self) -> String {
        match &self.library {
            Some(path) => path.display().to_string(),
            None => "libnvidia-ml.so.1".to_string(),
        }
    }

    fn drain_xid_events(&mut self, errors: &mut BTreeMap<&'static str, u64>) {
        let Some(set) = self.session.as_ref().and_then(|s| s.events.as_ref()) else {
            return;
        };
        // Bounded, so an event storm cannot stall the cycle; the rest wait for the next one.
        for _ in 0..1024 {
            match set.wait(0) {
                Ok(event) => {
                    if !event.event_type.contains(EventTypes::CRITICAL_XID_ERROR) {
                        continue;
                    }
                    let uuid = match event.device.uuid() {
                        Ok(uuid) => uuid,
                        Err(_) => {
                            *errors.entry("xid_events").or_default() += 1;
                            continue;
                        }
                    };
                    let code = match event.event_data {
                        Some(XidError::Value(code)) => code,
                        // NVML could not tell which XID: still an XID error; code 0 is unused.
                        Some(XidError::Unknown) | None => 0,
                    };
                    tracing::warn!(gpu_uuid = %uuid, xid = code, "XID error reported by NVML");
                    let counts = self.xid.entry(uuid).or_default();
                    *counts.by_code.entry(code).or_default() += 1;
                    counts.last = Some(code);
                }
                Err(NvmlError::Timeout) => break,
                Err(err) => {
                    *errors.entry("xid_events").or_default() += 1;
                    self.log_field_once("all", "xid_events", &err);
                    break;
                }
            }
        }
    }

    fn lost_reading(&self, index: u32) -> GpuReading {
        let id = self.identities.get(&index);
        GpuReading {
            index,
            uuid: id.map(|i| i.uuid.clone()).unwrap_or_default(),
            model: id.map(|i| i.model.clone()).unwrap_or_default(),
            pci_bus_id: id.and_then(|i| i.pci_bus_id.clone()),
            minor_number: id.and_then(|i| i.minor_number),
            up: false,
            ..GpuReading::default()
        }
    }

    fn read_gpu(
        &mut self,
        index: u32,
        device: &Device<'static>,
        errors: &mut BTreeMap<&'static str, u64>,
    ) -> GpuReading {
        match self.read_gpu_fields(index, device, errors) {
            Ok(reading) => reading,
            Err(Lost) => {
                *errors.entry("gpu_lost").or_default() += 1;
                let key = (format!("gpu{index}"), "gpu_lost");
                if self.logged_fields.insert(key) {
                    tracing::error!(
                        gpu = index,
                        "GPU is lost (NVML GPU_IS_LOST); reporting gpu_up 0"
                    );
                }
                self.lost_reading(index)
            }
        }
    }

    fn read_gpu_fields(
        &mut self,
        index: u32,
        device: &Device<'static>,
        errors: &mut BTreeMap<&'static str, u64>,
    ) -> Result<GpuReading, Lost> {
        let uuid = match device.uuid() {
            Ok(uuid) => uuid,
            Err(NvmlError::GpuLost) => return Err(Lost),
            Err(err) => {
                *errors.entry("uuid").or_default() += 1;
                self.log_field_once(&format!("gpu{index}"), "uuid", &err);
                return Err(Lost);
            }
        };
        if self.identities.get(&index).map(|i| &i.uuid) != Some(&uuid) {
            let model = self
                .field(&uuid, "name", device.name(), errors)?
                .unwrap_or_default();
            let pci_bus_id = self
                .field(&uuid, "pci_info", device.pci_info(), errors)?
                .map(|p| p.bus_id);
            let minor_number = self.field(&uuid, "minor_number", device.minor_number(), errors)?;
            self.identities.insert(
                index,
                Identity {
                    uuid: uuid.clone(),
                    model,
                    pci_bus_id,
                    minor_number,
                },
            );
            // A recycled index with a new UUID starts its own XID history.
        }
        let id = self.identities.get(&index).cloned().ok_or(Lost)?;
        let u = uuid.as_str();

        let utilization = self.field(u, "utilization", device.utilization_rates(), errors)?;
        let memory = self.field(u, "memory", device.memory_info(), errors)?;
        let power_mw = self.field(u, "power_usage", device.power_usage(), errors)?;
        let limit_mw = self.field(u, "power_limit", device.enforced_power_limit(), errors)?;
        let energy_mj = self.field(u, "energy", device.total_energy_consumption(), errors)?;
        let temperature = self.field(
            u,
            "temperature",
            device.temperature(TemperatureSensor::Gpu),
            errors,
        )?;
        let sm_clock = self.field(u, "sm_clock", device.clock_info(Clock::SM), errors)?;
        let mem_clock = self.field(u, "memory_clock", device.clock_info(Clock::Memory), errors)?;
        let encoder = self.field(
            u,
            "encoder_utilization",
            device.encoder_utilization(),
            errors,
        )?;
        let decoder = self.field(
            u,
            "decoder_utilization",
            device.decoder_utilization(),
            errors,
        )?;
        let throttle = self.field(
            u,
            "throttle_reasons",
            device.current_throttle_reasons(),
            errors,
        )?;
        let ecc_corrected = self.field(
            u,
            "ecc_corrected",
            device.total_ecc_errors(MemoryError::Corrected, EccCounter::Volatile),
            errors,
        )?;
        let ecc_uncorrected = self.field(
            u,
            "ecc_uncorrected",
            device.total_ecc_errors(MemoryError::Uncorrected, EccCounter::Volatile),
            errors,
        )?;
        let pcie_replay = self.field(u, "pcie_replay", device.pcie_replay_counter(), errors)?;
        let mig_mode = self.field(u, "mig_mode", device.mig_mode(), errors)?;
        let mig_enabled = mig_mode.map(|m| m.current == 1);
        let mig_instances = if mig_enabled == Some(true) {
            self.read_mig(u, device, errors)?
        } else {
            Vec::new()
        };
        // MIG instances are never shared between containers, so their processes are not needed.
        let processes = if mig_enabled == Some(true) {
            None
        } else {
            self.read_processes(u, device, errors)?
        };

        let xid_registered = self
            .session
            .as_ref()
            .is_some_and(|s| s.xid_registered.contains(&uuid));
        let (xid_errors, last_xid) = if xid_registered {
            let counts = self.xid.get(&uuid).cloned().unwrap_or_default();
            (Some(counts.by_code), counts.last)
        } else {
            (None, None)
        };

        Ok(GpuReading {
            index,
            uuid: id.uuid,
            model: id.model,
            pci_bus_id: id.pci_bus_id,
            minor_number: id.minor_number,
            up: true,
            mig_enabled,
            utilization_ratio: utilization.as_ref().map(|x| percent(x.gpu)),
            memory_copy_utilization_ratio: utilization.as_ref().map(|x| percent(x.memory)),
            memory_used_bytes: memory.as_ref().map(|m| m.used),
            memory_total_bytes: memory.as_ref().map(|m| m.total),
            power_watts: power_mw.map(|mw| f64::from(mw) / 1000.0),
            power_limit_watts: limit_mw.map(|mw| f64::from(mw) / 1000.0),
            energy_joules: energy_mj.map(|mj| mj as f64 / 1000.0),
            temperature_celsius: temperature.map(f64::from),
            sm_clock_hz: sm_clock.map(|mhz| f64::from(mhz) * 1e6),
            memory_clock_hz: mem_clock.map(|mhz| f64::from(mhz) * 1e6),
            encoder_utilization_ratio: encoder.map(|e| percent(e.utilization)),
            decoder_utilization_ratio: decoder.map(|d| percent(d.utilization)),
            throttle_reasons: throttle.map(|t| t.bits()),
            ecc_corrected_total: ecc_corrected,
            ecc_uncorrected_total: ecc_uncorrected,
            pcie_replay_total: pcie_replay.map(u64::from),
            xid_errors,
            last_xid,
            mig_instances,
            processes,
        })
    }

    /// Compute processes with their memory and mean SM utilization over the last window.
    fn read_processes(
        &mut self,
        uuid: &str,
        device: &Device<'static>,
        errors: &mut BTreeMap<&'static str, u64>,
    ) -> Result<Option<Vec<ProcessReading>>, Lost> {
        let Some(list) = self.field(
            uuid,
            "processes",
            device.running_compute_processes(),
            errors,
        )?
        else {
            return Ok(None);
        };
        if list.is_empty() {
            return Ok(Some(Vec::new()));
        }
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .saturating_sub(self.process_window)
            .as_micros() as u64;
        // NVML answers NOT_FOUND when no process ran a kernel in the window: all are idle.
        let samples = match device.process_utilization_stats(since) {
            Ok(samples) => Some(samples),
            Err(NvmlError::NotFound) => Some(Vec::new()),
            Err(err) => self
                .field::<Vec<ProcessUtilizationSample>>(
                    uuid,
                    "process_utilization",
                    Err(err),
                    errors,
                )?
                .map(|_| Vec::new()),
        };
        let mut sm: HashMap<u32, (u64, u64)> = HashMap::new();
        for sample in samples.iter().flatten() {
            let entry = sm.entry(sample.pid).or_default();
            entry.0 += u64::from(sample.sm_util.min(100));
            entry.1 += 1;
        }
        let mut out: Vec<ProcessReading> = Vec::with_capacity(list.len());
        for info in list {
            let memory = match info.used_gpu_memory {
                UsedGpuMemory::Used(bytes) => Some(bytes),
                UsedGpuMemory::Unavailable => None,
            };
            // A process with several contexts is listed once per context.
            if let Some(seen) = out.iter_mut().find(|p| p.pid == info.pid) {
                seen.used_memory_bytes = match (seen.used_memory_bytes, memory) {
                    (Some(a), Some(b)) => Some(a + b),
                    (a, b) => a.or(b),
                };
                continue;
            }
            let sm_utilization_ratio = samples.as_ref().map(|_| {
                sm.get(&info.pid)
                    .map_or(0.0, |(total, n)| *total as f64 / *n as f64 / 100.0)
            });
            out.push(ProcessReading {
                pid: info.pid,
                used_memory_bytes: memory,
                sm_utilization_ratio,
            });
        }
        Ok(Some(out))
    }

    fn read_mig(
        &mut self,
        uuid: &str,
        device: &Device<'static>,
        errors: &mut BTreeMap<&'static str, u64>,
    ) -> Result<Vec<MigReading>, Lost> {
        let Some(max) = self.field(uuid, "mig_device_count", device.mig_device_count(), errors)?
        else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for index in 0..max {
            let mig = match device.mig_device_by_index(index) {
                Ok(mig) => mig,
                // Unpopulated slots answer NOT_FOUND: not an error, just no instance there.
                Err(NvmlError::NotFound) | Err(NvmlError::InvalidArg) => continue,
                Err(NvmlError::GpuLost) => return Err(Lost),
                Err(err) => {
                    *errors.entry("mig_device").or_default() += 1;
                    self.log_field_once(uuid, "mig_device", &err);
                    continue;
                }
            };
            let Some(mig_uuid) = self.field(uuid, "mig_uuid", mig.uuid(), errors)? else {
                continue;
            };
            let profile = self
                .field(uuid, "mig_name", mig.name(), errors)?
                .map(|n| mig_profile_from_name(&n))
                .unwrap_or_default();
            let memory = self.field(uuid, "mig_memory", mig.memory_info(), errors)?;
            out.push(MigReading {
                index,
                uuid: mig_uuid,
                profile,
                memory_used_bytes: memory.as_ref().map(|m| m.used),
                memory_total_bytes: memory.as_ref().map(|m| m.total),
            });
        }
        Ok(out)
    }

    /// Turns one NVML call's result into a reading: unsupported → absent (logged once),
    /// lost GPU → `Lost`, other failures → absent and counted.
    fn field<T>(
        &mut self,
        uuid: &str,
        field: &'static str,
        result: Result<T, NvmlError>,
        errors: &mut BTreeMap<&'static str, u64>,
    ) -> Result<Option<T>, Lost> {
        match result {
            Ok(value) => Ok(Some(value)),
            Err(NvmlError::GpuLost) => Err(Lost),
            Err(
                NvmlError::NotSupported
                | NvmlError::FailedToLoadSymbol(_)
                | NvmlError::FunctionNotFound,
            ) => {
                if self.logged_fields.insert((uuid.to_string(), field)) {
                    tracing::info!(
                        gpu_uuid = uuid,
                        field,
                        "not supported by this GPU or driver; its series is absent"
                    );
                }
                Ok(None)
            }
            Err(err) => {
                *errors.entry(field).or_default() += 1;
                self.log_field_once(uuid, field, &err);
                Ok(None)
            }
        }
    }

    fn log_field_once(&mut self, uuid: &str, field: &'static str, err: &NvmlError) {
        if self.logged_fields.insert((uuid.to_string(), field)) {
            tracing::warn!(gpu_uuid = uuid, field, error = %err, "NVML call failed; the series is absent while it fails (counted in gpuscale_exporter_collection_errors_total)");
        }
    }
}

fn percent(value: u32) -> f64 {
    f64::from(value.min(100)) / 100.0
}

fn init_error_text(err: &NvmlError) -> String {
    match err {
        NvmlError::LibloadingError(e) => format!(
            "cannot load the NVML library ({e}); on Kubernetes run with the NVIDIA container \
             runtime (NVIDIA_VISIBLE_DEVICES=all) or pass --nvml-library"
        ),
        NvmlError::DriverNotLoaded => "the NVIDIA driver is not loaded on this node".to_string(),
        NvmlError::NoPermission => {
            "no permission to talk to the NVIDIA driver (check /dev/nvidia* access)".to_string()
        }
        other => format!("NVML initialisation failed: {other}"),
    }
}

/// Registers every GPU that supports it for XID events, in one event set.
fn register_xid_events(nvml: &'static Nvml) -> (Option<EventSet<'static>>, HashSet<String>) {
    let mut registered = HashSet::new();
    let Ok(count) = nvml.device_count() else {
        return (None, registered);
    };
    let mut set = match nvml.create_event_set() {
        Ok(set) => set,
        Err(err) => {
            tracing::info!(error = %err, "NVML events unavailable; XID counters are absent");
            return (None, registered);
        }
    };
    let mut registered_devices: Vec<u32> = Vec::new();
    for index in 0..count {
        let Ok(device) = nvml.device_by_index(index) else {
            continue;
        };
        let supported = device
            .supported_event_types()
            .is_ok_and(|t| t.contains(EventTypes::CRITICAL_XID_ERROR));
        let Ok(uuid) = device.uuid() else { continue };
        if !supported {
            tracing::info!(gpu_uuid = %uuid, "XID events not supported by this GPU; its XID counters are absent");
            continue;
        }
        match device.register_events(EventTypes::CRITICAL_XID_ERROR, set) {
            Ok(kept) => {
                set = kept;
                registered.insert(uuid);
                registered_devices.push(index);
            }
            Err(err) => {
                // nvml-wrapper frees the set when registration fails: start a new one and
                // register the GPUs that were already in it again.
                tracing::warn!(gpu_uuid = %uuid, error = %err.error, "cannot register for XID events");
                match nvml.create_event_set() {
                    Ok(fresh) => set = fresh,
                    Err(_) => return (None, HashSet::new()),
                }
                registered.clear();
                let mut again = Vec::new();
                for &prev in &registered_devices {
                    let Ok(d) = nvml.device_by_index(prev) else {
                        continue;
                    };
                    let Ok(u) = d.uuid() else { continue };
                    match d.register_events(EventTypes::CRITICAL_XID_ERROR, set) {
                        Ok(kept) => {
                            set = kept;
                            registered.insert(u);
                            again.push(prev);
                        }
                        Err(_) => return (None, HashSet::new()),
                    }
                }
                registered_devices = again;
            }
        }
    }
    (Some(set), registered)
}
