//! The scenario file: what the simulated node looks like and how its readings move over time.
//!
//! Parsing is strict (`deny_unknown_fields`) because a misspelt field would otherwise silently
//! fall back to a default and make a test pass or fail for the wrong reason. Every error is one
//! line; serde errors carry the line and column.

use std::f64::consts::TAU;

use serde::Deserialize;
use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};

/// Longest name or UUID NVML hands out (its `*_V2_BUFFER_SIZE` minus the NUL).
const MAX_NAME_LEN: usize = 95;

/// The whole simulated node.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Scenario {
    pub driver_version: String,
    pub cuda_driver_version: i32,
    pub nvml_version: String,
    /// Makes every `nvmlInit*` fail, to exercise the exporter's "no driver" path.
    pub init_error: Option<InitError>,
    pub gpus: Vec<Gpu>,
}

impl Default for Scenario {
    fn default() -> Self {
        Self {
            driver_version: "550.54.15".into(),
            cuda_driver_version: 12040,
            nvml_version: "12.550.54.15".into(),
            init_error: None,
            gpus: Vec::new(),
        }
    }
}

/// The errors a real `nvmlInit` reports on a broken node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InitError {
    DriverNotLoaded,
    NoPermission,
    Unknown,
}

/// One physical GPU. Every field may be omitted; the defaults describe an idle A100.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Gpu {
    pub name: String,
    /// Empty means "derive one from the index", so a scenario can list bare `{}` GPUs.
    pub uuid: String,
    /// Empty means "derive one from the index".
    pub pci_bus_id: String,
    #[serde(skip)]
    pub pci: Pci,
    /// `None` means "the GPU's index", which is what the driver does on a plain node.
    pub minor_number: Option<u32>,
    pub memory_total_bytes: u64,
    pub utilization_gpu_percent: Value,
    pub utilization_memory_percent: Value,
    pub memory_used_bytes: Value,
    pub power_usage_watts: Value,
    pub power_limit_watts: Value,
    /// `None` integrates `power_usage_watts`, which keeps the counter monotonic and
    /// consistent with the power reading.
    pub energy_joules: Option<Value>,
    pub temperature_celsius: Value,
    pub sm_clock_mhz: Value,
    pub memory_clock_mhz: Value,
    pub max_sm_clock_mhz: u32,
    pub max_memory_clock_mhz: u32,
    pub encoder_utilization_percent: Value,
    pub decoder_utilization_percent: Value,
    pub throttle_reasons: Throttle,
    pub ecc_corrected_total: Value,
    pub ecc_uncorrected_total: Value,
    pub pcie_replay_total: Value,
    pub unsupported: Vec<Feature>,
    pub lost_at_seconds: Option<f64>,
    pub xid_events: Vec<XidEvent>,
    pub mig: Option<Mig>,
    pub processes: Vec<Process>,
}

impl Default for Gpu {
    fn default() -> Self {
        Self {
            name: "NVIDIA A100-SXM4-80GB".into(),
            uuid: String::new(),
            pci_bus_id: String::new(),
            pci: Pci::default(),
            minor_number: None,
            memory_total_bytes: 80 << 30,
            utilization_gpu_percent: Value::Const(0.0),
            utilization_memory_percent: Value::Const(0.0),
            memory_used_bytes: Value::Const(0.0),
            power_usage_watts: Value::Const(60.0),
            power_limit_watts: Value::Const(400.0),
            energy_joules: None,
            temperature_celsius: Value::Const(32.0),
            sm_clock_mhz: Value::Const(1410.0),
            memory_clock_mhz: Value::Const(1593.0),
            max_sm_clock_mhz: 1410,
            max_memory_clock_mhz: 1593,
            encoder_utilization_percent: Value::Const(0.0),
            decoder_utilization_percent: Value::Const(0.0),
            throttle_reasons: Throttle::Static(Vec::new()),
            ecc_corrected_total: Value::Const(0.0),
            ecc_uncorrected_total: Value::Const(0.0),
            pcie_replay_total: Value::Const(0.0),
            unsupported: Vec::new(),
            lost_at_seconds: None,
            xid_events: Vec::new(),
            mig: None,
            processes: Vec::new(),
        }
    }
}

impl Gpu {
    /// Whether the scenario turned this query off (NVML then says `NOT_SUPPORTED`).
    pub fn supports(&self, feature: Feature) -> bool {
        !self.unsupported.contains(&feature)
    }

    /// Lost GPUs stay enumerable but answer nothing, like a GPU that fell off the bus.
    pub fn is_lost(&self, t: f64) -> bool {
        self.lost_at_seconds.is_some_and(|at| t >= at)
    }

    /// MIG instances that currently exist (none while MIG mode is off).
    pub fn mig_instances(&self) -> &[MigInstance] {
        match &self.mig {
            Some(mig) if mig.enabled => &mig.instances,
            _ => &[],
        }
    }

    /// The throttle-reason bitmask NVML would report at `t`.
    pub fn throttle_mask(&self, t: f64) -> u64 {
        self.throttle_reasons
            .at(t)
            .iter()
            .fold(0, |mask, reason| mask | reason.bit())
    }

    /// A GPU of the built-in node: readings follow smooth, phase-shifted sines so a demo
    /// shows movement while the node average still varies.
    pub fn simulated(index: usize) -> Self {
        const PERIOD: f64 = 240.0;
        const STEP: f64 = 10.0;
        let phase = index as f64 * 0.7;
        let util = |t: f64| 55.0 + 35.0 * (TAU * t / PERIOD - phase).sin();
        let sampled = |f: &dyn Fn(f64) -> f64| {
            let n = (PERIOD / STEP) as usize;
            Value::Series(Series {
                points: (0..=n)
                    .map(|k| (k as f64 * STEP, f(k as f64 * STEP)))
                    .collect(),
                step: false,
                repeat_seconds: Some(PERIOD),
            })
        };
        let total = 80u64 << 30;
        let throttle_points = (0..=(PERIOD / STEP) as usize)
            .map(|k| {
                let u = util(k as f64 * STEP);
                let reasons = if u < 25.0 {
                    vec![ThrottleReason::GpuIdle]
                } else if u > 85.0 {
                    vec![ThrottleReason::SwPowerCap]
                } else {
                    Vec::new()
                };
                (k as f64 * STEP, reasons)
            })
            .collect();
        Self {
            utilization_gpu_percent: sampled(&util),
            utilization_memory_percent: sampled(&|t| 0.6 * util(t)),
            memory_used_bytes: sampled(&|t| total as f64 * (0.2 + 0.006 * util(t))),
            power_usage_watts: sampled(&|t| 70.0 + 3.0 * util(t)),
            temperature_celsius: sampled(&|t| 33.0 + 0.35 * util(t)),
            sm_clock_mhz: sampled(&|t| if util(t) < 25.0 { 1095.0 } else { 1410.0 }),
            decoder_utilization_percent: sampled(&|t| (0.1 * util(t)).floor()),
            throttle_reasons: Throttle::Series(ThrottleSeries {
                points: throttle_points,
                repeat_seconds: Some(PERIOD),
            }),
            ..Self::default()
        }
    }
}

/// A PCI address, parsed once so `nvmlPciInfo_t` can be filled without re-parsing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pci {
    pub domain: u32,
    pub bus: u32,
    pub device: u32,
    pub function: u32,
}

impl Pci {
    /// Accepts NVML's `DDDDDDDD:BB:DD.F` and the legacy `DDDD:BB:DD.F` form, any case.
    pub fn parse(text: &str) -> Option<Self> {
        let (domain, rest) = text.split_once(':')?;
        let (bus, rest) = rest.split_once(':')?;
        let (device, function) = rest.split_once('.')?;
        let hex = |s: &str, max_len: usize| {
            if s.is_empty() || s.len() > max_len || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            u32::from_str_radix(s, 16).ok()
        };
        let pci = Self {
            domain: hex(domain, 8)?,
            bus: hex(bus, 2)?,
            device: hex(device, 2)?,
            function: hex(function, 1)?,
        };
        (pci.device < 32 && pci.function < 8).then_some(pci)
    }

    /// The `busId` form NVML reports (8-digit domain, upper case).
    pub fn bus_id(&self) -> String {
        format!(
            "{:08X}:{:02X}:{:02X}.{:X}",
            self.domain, self.bus, self.device, self.function
        )
    }

    /// The `busIdLegacy` form (4-digit domain).
    pub fn bus_id_legacy(&self) -> String {
        format!(
            "{:04X}:{:02X}:{:02X}.{:X}",
            self.domain & 0xFFFF,
            self.bus,
            self.device,
            self.function
        )
    }
}

/// Queries a scenario can switch off, each mapping to the NVML calls that then return
/// `NVML_ERROR_NOT_SUPPORTED`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Feature {
    /// `nvmlDeviceGetUtilizationRates`.
    Utilization,
    /// Also `nvmlDeviceGetUtilizationRates`: NVML reports both percentages in one call, so
    /// one cannot be missing without the other.
    MemoryUtilization,
    /// `nvmlDeviceGetMemoryInfo*`.
    Memory,
    Power,
    PowerLimit,
    Energy,
    Temperature,
    /// Current and maximum clocks.
    Clocks,
    EncoderUtilization,
    DecoderUtilization,
    /// Current and supported clock throttle (event) reasons.
    ThrottleReasons,
    Ecc,
    PcieReplay,
    /// Supported event types and event registration.
    Events,
    /// MIG mode and MIG device enumeration, like a GPU without MIG.
    Mig,
    /// `nvmlDeviceGetComputeRunningProcesses*`.
    Processes,
    /// `nvmlDeviceGetProcessUtilization`.
    ProcessUtilization,
}

/// An XID error the driver reports once its time has come.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct XidEvent {
    pub at_seconds: f64,
    pub xid: u64,
}

/// MIG configuration of one GPU.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mig {
    /// Defaults to on: listing instances is the usual reason to write a `mig` block.
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default)]
    pub instances: Vec<MigInstance>,
}

fn yes() -> bool {
    true
}

/// One MIG device (a GPU instance plus compute instance).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MigInstance {
    /// Empty means "derive one from the parent GPU and slot".
    #[serde(default)]
    pub uuid: String,
    pub profile: String,
    pub gpu_instance_id: u32,
    #[serde(default)]
    pub compute_instance_id: u32,
    pub memory_total_bytes: u64,
    #[serde(default = "zero")]
    pub memory_used_bytes: Value,
}

fn zero() -> Value {
    Value::Const(0.0)
}

/// A process holding a context on the GPU.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Process {
    pub pid: u32,
    #[serde(default = "zero")]
    pub used_memory_bytes: Value,
    #[serde(default = "zero")]
    pub sm_util_percent: Value,
    #[serde(default = "zero")]
    pub mem_util_percent: Value,
    /// Position in the GPU's `mig.instances`, for a process running inside a MIG device.
    #[serde(default)]
    pub mig_instance: Option<usize>,
}

/// A reading: a constant, or a time series sampled at "seconds since the first init".
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Const(f64),
    Series(Series),
}

impl Value {
    pub fn at(&self, t: f64) -> f64 {
        match self {
            Value::Const(v) => *v,
            Value::Series(series) => series.at(t),
        }
    }
}

impl<'de> Deserialize<'de> for Value {
    // Hand-written rather than `#[serde(untagged)]` so a typo inside a series reports the
    // field name instead of "did not match any variant".
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ValueVisitor;
        impl<'de> Visitor<'de> for ValueVisitor {
            type Value = Value;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str(r#"a number or {"points": [[seconds, value], ...]}"#)
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
                Ok(Value::Const(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
                Ok(Value::Const(v as f64))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
                Ok(Value::Const(v as f64))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Value, A::Error> {
                Series::deserialize(MapAccessDeserializer::new(map)).map(Value::Series)
            }
        }
        deserializer.deserialize_any(ValueVisitor)
    }
}

/// Points in time order; linear or step interpolation, optionally looping.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "RawSeries")]
pub struct Series {
    points: Vec<(f64, f64)>,
    step: bool,
    repeat_seconds: Option<f64>,
}

impl Series {
    pub fn at(&self, t: f64) -> f64 {
        let t = phase(t, self.repeat_seconds);
        match locate(&self.points, t) {
            Position::At(i) => self.points[i].1,
            Position::Between(i) if self.step => self.points[i].1,
            Position::Between(i) => {
                let ((t0, v0), (t1, v1)) = (self.points[i], self.points[i + 1]);
                v0 + (v1 - v0) * (t - t0) / (t1 - t0)
            }
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSeries {
    points: Vec<(f64, f64)>,
    #[serde(default)]
    interpolate: Interpolate,
    #[serde(default)]
    repeat_seconds: Option<f64>,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Interpolate {
    #[default]
    Linear,
    Step,
}

impl TryFrom<RawSeries> for Series {
    type Error = String;
    fn try_from(raw: RawSeries) -> Result<Self, String> {
        check_points(&raw.points, raw.repeat_seconds)?;
        Ok(Self {
            points: raw.points,
            step: matches!(raw.interpolate, Interpolate::Step),
            repeat_seconds: raw.repeat_seconds,
        })
    }
}

/// Clock throttle reasons: a fixed list or a step series of lists.
#[derive(Debug, Clone, PartialEq)]
pub enum Throttle {
    Static(Vec<ThrottleReason>),
    Series(ThrottleSeries),
}

impl Throttle {
    pub fn at(&self, t: f64) -> &[ThrottleReason] {
        match self {
            Throttle::Static(reasons) => reasons,
            Throttle::Series(series) => {
                let t = phase(t, series.repeat_seconds);
                match locate(&series.points, t) {
                    Position::At(i) | Position::Between(i) => &series.points[i].1,
                }
            }
        }
    }
}

impl<'de> Deserialize<'de> for Throttle {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ThrottleVisitor;
        impl<'de> Visitor<'de> for ThrottleVisitor {
            type Value = Throttle;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str(r#"a list of reasons or {"points": [[seconds, [reasons]], ...]}"#)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Throttle, A::Error> {
                Vec::deserialize(SeqAccessDeserializer::new(seq)).map(Throttle::Static)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Throttle, A::Error> {
                ThrottleSeries::deserialize(MapAccessDeserializer::new(map)).map(Throttle::Series)
            }
        }
        deserializer.deserialize_any(ThrottleVisitor)
    }
}

/// Throttle reasons over time; always step-interpolated (a set of flags has no midpoint).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "RawThrottleSeries")]
pub struct ThrottleSeries {
    points: Vec<(f64, Vec<ThrottleReason>)>,
    repeat_seconds: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawThrottleSeries {
    points: Vec<(f64, Vec<ThrottleReason>)>,
    #[serde(default)]
    repeat_seconds: Option<f64>,
}

impl TryFrom<RawThrottleSeries> for ThrottleSeries {
    type Error = String;
    fn try_from(raw: RawThrottleSeries) -> Result<Self, String> {
        check_points(&raw.points, raw.repeat_seconds)?;
        Ok(Self {
            points: raw.points,
            repeat_seconds: raw.repeat_seconds,
        })
    }
}

/// The reasons NVML can report, named after its `nvmlClocksThrottleReason*` constants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ThrottleReason {
    GpuIdle,
    ApplicationsClocksSetting,
    SwPowerCap,
    HwSlowdown,
    SyncBoost,
    SwThermalSlowdown,
    HwThermalSlowdown,
    HwPowerBrakeSlowdown,
    DisplayClockSetting,
}

impl ThrottleReason {
    /// The bit NVML uses for this reason.
    pub fn bit(self) -> u64 {
        match self {
            ThrottleReason::GpuIdle => 0x1,
            ThrottleReason::ApplicationsClocksSetting => 0x2,
            ThrottleReason::SwPowerCap => 0x4,
            ThrottleReason::HwSlowdown => 0x8,
            ThrottleReason::SyncBoost => 0x10,
            ThrottleReason::SwThermalSlowdown => 0x20,
            ThrottleReason::HwThermalSlowdown => 0x40,
            ThrottleReason::HwPowerBrakeSlowdown => 0x80,
            ThrottleReason::DisplayClockSetting => 0x100,
        }
    }

    /// Every reason this stand-in can report, as a mask (what "supported reasons" returns).
    pub const ALL_BITS: u64 = 0x1FF;
}

fn check_points<T>(points: &[(f64, T)], repeat_seconds: Option<f64>) -> Result<(), String> {
    if points.is_empty() {
        return Err("`points` must not be empty".into());
    }
    for pair in points.windows(2) {
        if pair[1].0 < pair[0].0 {
            return Err(format!(
                "`points` must be in time order, but {} comes after {}",
                pair[1].0, pair[0].0
            ));
        }
    }
    match repeat_seconds {
        Some(p) if !(p > 0.0 && p.is_finite()) => {
            Err(format!("`repeat_seconds` must be positive, got {p}"))
        }
        _ => Ok(()),
    }
}

fn phase(t: f64, repeat_seconds: Option<f64>) -> f64 {
    match repeat_seconds {
        Some(period) if period > 0.0 => t.rem_euclid(period),
        _ => t,
    }
}

enum Position {
    /// Before the first point, after the last, or exactly on one: hold that point.
    At(usize),
    /// Strictly between point `i` and `i + 1` (whose times then differ).
    Between(usize),
}

fn locate<T>(points: &[(f64, T)], t: f64) -> Position {
    let after = points.partition_point(|(pt, _)| *pt <= t);
    if after == 0 {
        Position::At(0)
    } else if after >= points.len() {
        Position::At(points.len().saturating_sub(1))
    } else if points[after - 1].0 == t {
        Position::At(after - 1)
    } else {
        Position::Between(after - 1)
    }
}

impl Scenario {
    /// The node used when no scenario file is given: four busy A100s, no MIG, no events.
    pub fn simulated_node() -> Self {
        let mut scenario = Self {
            gpus: (0..4).map(Gpu::simulated).collect(),
            ..Self::default()
        };
        // Cannot fail: generated names, UUIDs and bus IDs are well-formed.
        let _ = scenario.finish();
        scenario
    }

    /// Parses and validates a scenario file's text. The error is one line.
    pub fn from_json(text: &str) -> Result<Self, String> {
        let mut scenario: Scenario = serde_json::from_str(text).map_err(|e| e.to_string())?;
        scenario.finish()?;
        Ok(scenario)
    }

    /// Fills index-derived defaults and checks what serde cannot: lengths NVML's buffers
    /// impose, PCI syntax, unique UUIDs and process-to-MIG references.
    fn finish(&mut self) -> Result<(), String> {
        let mut uuids = std::collections::HashSet::new();
        for (i, gpu) in self.gpus.iter_mut().enumerate() {
            let at = format!("gpus[{i}]");
            if gpu.uuid.is_empty() {
                gpu.uuid = format!("GPU-5ca1ab1e-{i:04x}-4e57-a11d-{:012x}", 0x51_0000 + i);
            }
            if gpu.pci_bus_id.is_empty() {
                const BUSES: [u32; 8] = [0x07, 0x0F, 0x47, 0x4E, 0x87, 0x90, 0xB7, 0xBD];
                let bus = BUSES.get(i).copied().unwrap_or(0xC0 + i as u32 % 0x40);
                gpu.pci_bus_id = Pci {
                    bus,
                    ..Pci::default()
                }
                .bus_id();
            }
            gpu.pci = Pci::parse(&gpu.pci_bus_id).ok_or_else(|| {
                format!(
                    "{at}.pci_bus_id: {:?} is not of the form 00000000:1A:00.0",
                    gpu.pci_bus_id
                )
            })?;
            gpu.minor_number.get_or_insert(i as u32);
            check_text(&format!("{at}.name"), &gpu.name)?;
            check_text(&format!("{at}.uuid"), &gpu.uuid)?;
            if !uuids.insert(gpu.uuid.clone()) {
                return Err(format!("{at}.uuid: {:?} is used twice", gpu.uuid));
            }
            if let Some(at_seconds) = gpu.lost_at_seconds {
                if !at_seconds.is_finite() {
                    return Err(format!("{at}.lost_at_seconds must be a finite number"));
                }
            }
            let instances = gpu.mig.as_mut().map(|m| m.instances.as_mut_slice());
            let instance_count = instances.as_ref().map_or(0, |m| m.len());
            if instance_count > 255 {
                return Err(format!("{at}.mig.instances: at most 255 are supported"));
            }
            for (k, instance) in instances.into_iter().flatten().enumerate() {
                let at = format!("{at}.mig.instances[{k}]");
                if instance.uuid.is_empty() {
                    instance.uuid =
                        format!("MIG-5ca1ab1e-{i:04x}-{k:04x}-a11d-{:012x}", 0x51_0000 + i);
                }
                check_text(&format!("{at}.uuid"), &instance.uuid)?;
                check_text(
                    &format!("{at}.profile"),
                    &format!("{} MIG {}", gpu.name, instance.profile),
                )?;
                if !uuids.insert(instance.uuid.clone()) {
                    return Err(format!("{at}.uuid: {:?} is used twice", instance.uuid));
                }
            }
            for (k, process) in gpu.processes.iter().enumerate() {
                if let Some(m) = process.mig_instance {
                    if m >= instance_count {
                        return Err(format!(
                            "{at}.processes[{k}].mig_instance: {m}, but the GPU has {instance_count} MIG instances"
                        ));
                    }
                }
            }
        }
        if self.gpus.len() > 0xFF_FFFF {
            return Err("gpus: too many".into());
        }
        check_text("driver_version", &self.driver_version)?;
        check_text("nvml_version", &self.nvml_version)?;
        Ok(())
    }
}

/// Strings end up in fixed-size C buffers; refuse what could not be returned whole.
fn check_text(at: &str, text: &str) -> Result<(), String> {
    if text.len() > MAX_NAME_LEN {
        return Err(format!("{at}: longer than {MAX_NAME_LEN} bytes"));
    }
    if text.contains('\0') {
        return Err(format!("{at}: contains a NUL character"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(json: &str) -> Value {
        serde_json::from_str(json).expect("valid series")
    }

    #[test]
    fn linear_step_and_repeat() {
        let lin = series(r#"{"points": [[10, 0], [20, 100]]}"#);
        assert_eq!(lin.at(0.0), 0.0);
        assert_eq!(lin.at(15.0), 50.0);
        assert_eq!(lin.at(99.0), 100.0);
        let step = series(r#"{"points": [[0, 1], [10, 2]], "interpolate": "step"}"#);
        assert_eq!(step.at(9.9), 1.0);
        assert_eq!(step.at(10.0), 2.0);
        let rep = series(r#"{"points": [[0, 0], [10, 10]], "repeat_seconds": 10}"#);
        assert_eq!(rep.at(25.0), 5.0);
        let same_time = series(r#"{"points": [[0, 0], [5, 1], [5, 9]]}"#);
        assert_eq!(same_time.at(5.0), 9.0);
        assert_eq!(same_time.at(5.5), 9.0);
    }

    #[test]
    fn typo_names_the_field_and_position() {
        let err = Scenario::from_json("{\n  \"gpus\": [{\"utilisation_gpu_percent\": 5}]\n}")
            .expect_err("typo must fail");
        assert!(
            err.contains("unknown field `utilisation_gpu_percent`"),
            "{err}"
        );
        assert!(err.contains("line 2"), "{err}");
        let err = Scenario::from_json(r#"{"gpus": [{"power_usage_watts": {"point": []}}]}"#)
            .expect_err("typo in series must fail");
        assert!(err.contains("unknown field `point`"), "{err}");
        assert!(err.contains("column"), "{err}");
    }

    #[test]
    fn bad_series_and_references_are_rejected() {
        for (json, needle) in [
            (
                r#"{"gpus": [{"sm_clock_mhz": {"points": []}}]}"#,
                "must not be empty",
            ),
            (
                r#"{"gpus": [{"sm_clock_mhz": {"points": [[2, 1], [1, 1]]}}]}"#,
                "time order",
            ),
            (r#"{"gpus": [{"sm_clock_mhz": "fast"}]}"#, "a number or"),
            (
                r#"{"gpus": [{"throttle_reasons": ["slow"]}]}"#,
                "unknown variant `slow`",
            ),
            (
                r#"{"gpus": [{"unsupported": ["fan"]}]}"#,
                "unknown variant `fan`",
            ),
            (
                r#"{"gpus": [{"pci_bus_id": "1A:00.0"}]}"#,
                "gpus[0].pci_bus_id",
            ),
            (
                r#"{"gpus": [{"uuid": "GPU-1"}, {"uuid": "GPU-1"}]}"#,
                "used twice",
            ),
            (
                r#"{"gpus": [{"processes": [{"pid": 1, "mig_instance": 0}]}]}"#,
                "mig_instance",
            ),
            (r#"{"init_error": "tired"}"#, "unknown variant `tired`"),
        ] {
            let err = Scenario::from_json(json).expect_err(json);
            assert!(err.contains(needle), "{json}: {err}");
            assert!(!err.contains('\n'), "one line: {err}");
        }
    }

    #[test]
    fn defaults_fill_a_bare_gpu() {
        let s = Scenario::from_json(r#"{"gpus": [{}, {"pci_bus_id": "0000:1a:00.0"}]}"#)
            .expect("valid");
        assert_eq!(s.driver_version, "550.54.15");
        assert_eq!(s.gpus[0].pci.bus_id(), "00000000:07:00.0");
        assert_eq!(s.gpus[1].pci.bus_id(), "00000000:1A:00.0");
        assert_eq!(s.gpus[1].pci.bus_id_legacy(), "0000:1A:00.0");
        assert_eq!(s.gpus[1].minor_number, Some(1));
        assert_ne!(s.gpus[0].uuid, s.gpus[1].uuid);
    }

    #[test]
    fn throttle_series_steps() {
        let s = Scenario::from_json(
            r#"{"gpus": [{"throttle_reasons": {"points": [[0, []], [5, ["sw_power_cap", "hw_slowdown"]]]}}]}"#,
        )
        .expect("valid");
        assert_eq!(s.gpus[0].throttle_mask(4.0), 0);
        assert_eq!(s.gpus[0].throttle_mask(6.0), 0x4 | 0x8);
    }

    /// Keeps the documented example honest.
    #[test]
    fn documented_example_parses() {
        let doc = include_str!("../../docs/nvml-standin.md");
        let example = doc
            .split("### Example")
            .nth(1)
            .and_then(|rest| rest.split("```json").nth(1))
            .and_then(|block| block.split("```").next())
            .expect("docs/nvml-standin.md has an example");
        let s = Scenario::from_json(example).expect("documented example is valid");
        assert_eq!(s.gpus.len(), 3);
        assert_eq!(s.gpus[2].mig_instances().len(), 2);
    }

    #[test]
    fn simulated_node_is_plausible() {
        let s = Scenario::simulated_node();
        assert_eq!(s.gpus.len(), 4);
        for t in [0.0, 33.0, 120.0, 1000.0] {
            for g in &s.gpus {
                let u = g.utilization_gpu_percent.at(t);
                assert!((0.0..=100.0).contains(&u), "{u}");
                assert!(g.memory_used_bytes.at(t) < g.memory_total_bytes as f64);
            }
        }
    }
}
