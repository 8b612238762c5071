//! The data one collection cycle produces: what `/metrics` encodes until the next cycle.
//!
//! Every reading is an `Option`: a field the GPU does not support, or that failed this cycle,
//! is `None` and its series is absent, never a made-up 0.

use std::collections::BTreeMap;

/// Everything the exporter knows after one collection cycle.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Kubernetes node name (`--node-name` / `NODE_NAME`).
    pub node: String,
    /// Whether NVML could be loaded and initialised this cycle.
    pub nvml_up: bool,
    pub driver_version: Option<String>,
    /// CUDA driver API version as `major.minor`.
    pub cuda_version: Option<String>,
    pub gpus: Vec<GpuReading>,
    pub health: Health,
    /// GPU shares, utilization and memory per container (empty without pod-resources).
    pub pods: Vec<PodGpuReading>,
    /// Engine request signals per serving pod (one cycle behind, never stale).
    pub workloads: Vec<WorkloadReading>,
    pub attribution: AttributionHealth,
}

/// How the attribution sources answered. `None`: the source is turned off.
#[derive(Debug, Clone, Default)]
pub struct AttributionHealth {
    pub kubelet_up: Option<bool>,
    pub kube_api_up: Option<bool>,
    /// Failed engine scrapes by (namespace, pod, engine), for pods still on the node.
    pub workload_scrape_errors: BTreeMap<(String, String, String), u64>,
}

/// How a container holds its GPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Sharing {
    Exclusive,
    TimeSlicing,
    Mig,
}

impl Sharing {
    pub fn label(self) -> &'static str {
        match self {
            Sharing::Exclusive => "exclusive",
            Sharing::TimeSlicing => "time-slicing",
            Sharing::Mig => "mig",
        }
    }
}

/// One container's use of one GPU (or MIG instance).
#[derive(Debug, Clone, PartialEq)]
pub struct PodGpuReading {
    pub namespace: String,
    pub pod: String,
    pub container: String,
    /// Empty when the Kubernetes API is unavailable.
    pub workload: String,
    pub workload_kind: String,
    pub gpu: u32,
    pub uuid: String,
    pub model: String,
    /// `(mig_uuid, mig_profile)` for a MIG instance.
    pub mig: Option<(String, String)>,
    pub sharing: Sharing,
    /// Share of the physical GPU allocated to the container (1 for a whole GPU).
    pub allocated: Option<f64>,
    pub utilization_ratio: Option<f64>,
    pub memory_used_bytes: Option<u64>,
}

/// A histogram as the engine exposed it, summed over the engine's own labels: cumulative
/// counts by upper bound (ending with `+Inf`), in seconds.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct HistogramReading {
    pub buckets: Vec<(f64, f64)>,
    pub sum: f64,
    pub count: f64,
}

/// One serving pod's request signals.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct WorkloadReading {
    pub namespace: String,
    pub pod: String,
    pub workload: String,
    pub workload_kind: String,
    pub engine: String,
    pub in_flight: Option<f64>,
    pub waiting: Option<f64>,
    pub requests_total: Option<f64>,
    pub duration_seconds: Option<HistogramReading>,
}

/// The exporter's own health, cumulative since start.
#[derive(Debug, Clone, Default)]
pub struct Health {
    /// Seconds the last cycle took.
    pub last_duration_seconds: f64,
    /// Unix time of the last cycle that reached NVML, if any.
    pub last_success_unix_seconds: Option<f64>,
    pub collections_total: u64,
    /// Failed NVML calls (other than "not supported") by field name.
    pub errors_by_field: BTreeMap<&'static str, u64>,
}

/// One physical GPU as read in one cycle.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GpuReading {
    pub index: u32,
    pub uuid: String,
    pub model: String,
    pub pci_bus_id: Option<String>,
    /// `/dev/nvidiaN` minor number, used for dcgm-exporter's `device` label.
    pub minor_number: Option<u32>,
    /// `false` once the GPU stopped answering (NVML `GPU_IS_LOST`); all readings are `None` then.
    pub up: bool,
    pub mig_enabled: Option<bool>,
    pub utilization_ratio: Option<f64>,
    pub memory_copy_utilization_ratio: Option<f64>,
    pub memory_used_bytes: Option<u64>,
    pub memory_total_bytes: Option<u64>,
    pub power_watts: Option<f64>,
    pub power_limit_watts: Option<f64>,
    pub energy_joules: Option<f64>,
    pub temperature_celsius: Option<f64>,
    pub sm_clock_hz: Option<f64>,
    pub memory_clock_hz: Option<f64>,
    pub encoder_utilization_ratio: Option<f64>,
    pub decoder_utilization_ratio: Option<f64>,
    /// Raw NVML clocks-event (throttle) bitmask.
    pub throttle_reasons: Option<u64>,
    pub ecc_corrected_total: Option<u64>,
    pub ecc_uncorrected_total: Option<u64>,
    pub pcie_replay_total: Option<u64>,
    /// XID code → events seen since the exporter started. `None` when the GPU cannot deliver
    /// XID events, so "no errors" and "cannot tell" stay distinguishable.
    pub xid_errors: Option<BTreeMap<u64, u64>>,
    /// The most recent XID code, for dcgm-exporter's `DCGM_FI_DEV_XID_ERRORS`.
    pub last_xid: Option<u64>,
    pub mig_instances: Vec<MigReading>,
    /// Compute processes on a GPU not in MIG mode; `None` when NVML cannot list them.
    pub processes: Option<Vec<ProcessReading>>,
}

/// One compute process on a GPU.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProcessReading {
    pub pid: u32,
    pub used_memory_bytes: Option<u64>,
    /// Mean SM utilization of the process over the last sampling window (0..1); 0 when
    /// NVML has no sample for it (it ran no kernels), `None` when the GPU cannot tell.
    pub sm_utilization_ratio: Option<f64>,
}

/// One MIG device (GPU instance + compute instance) of a GPU in MIG mode.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MigReading {
    /// Position among the parent's MIG devices, stable while the MIG layout is unchanged.
    pub index: u32,
    pub uuid: String,
    /// Profile such as `1g.10gb`, parsed from the MIG device name.
    pub profile: String,
    pub memory_used_bytes: Option<u64>,
    pub memory_total_bytes: Option<u64>,
}

/// NVML clocks-event reasons, with the label value each gets. Values are the bits of
/// `nvmlClocksEventReason*` in nvml.h.
pub const THROTTLE_REASONS: [(&str, u64); 9] = [
    ("gpu_idle", 0x1),
    ("applications_clocks_setting", 0x2),
    ("sw_power_cap", 0x4),
    ("hw_slowdown", 0x8),
    ("sync_boost", 0x10),
    ("sw_thermal_slowdown", 0x20),
    ("hw_thermal_slowdown", 0x40),
    ("hw_power_brake_slowdown", 0x80),
    ("display_clock_setting", 0x100),
];

/// The MIG profile (`1g.10gb`) from a MIG device name such as
/// `NVIDIA A100-SXM4-80GB MIG 1g.10gb`; the whole name when it has no ` MIG ` part.
pub fn mig_profile_from_name(name: &str) -> String {
    match name.rsplit_once(" MIG ") {
        Some((_, profile)) => profile.trim().to_string(),
        None => name.trim().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mig_profile_parsed_from_device_name() {
        assert_eq!(
            mig_profile_from_name("NVIDIA A100-SXM4-80GB MIG 1g.10gb"),
            "1g.10gb"
        );
        assert_eq!(mig_profile_from_name("NVIDIA H100 MIG 3g.40gb "), "3g.40gb");
        assert_eq!(mig_profile_from_name("odd"), "odd");
    }
}
