//! gpuscale's own metric names: `gpu_` prefix, base units, one series per GPU (and per MIG
//! instance), labelled `node`, `gpu`, `uuid`, `model`.

use super::{Family, Labels};
use crate::snapshot::{GpuReading, MigReading, Snapshot, THROTTLE_REASONS};

fn gpu_labels(s: &Snapshot, g: &GpuReading) -> Labels {
    vec![
        ("node", s.node.clone()),
        ("gpu", g.index.to_string()),
        ("uuid", g.uuid.clone()),
        ("model", g.model.clone()),
    ]
}

fn mig_labels(s: &Snapshot, g: &GpuReading, m: &MigReading) -> Labels {
    let mut labels = gpu_labels(s, g);
    labels.push(("mig_instance", m.index.to_string()));
    labels.push(("mig_uuid", m.uuid.clone()));
    labels.push(("mig_profile", m.profile.clone()));
    labels
}

fn with(mut labels: Labels, name: &'static str, value: String) -> Labels {
    labels.push((name, value));
    labels
}

pub(super) fn families(s: &Snapshot) -> Vec<Family> {
    let mut info = Family::gauge(
        "gpu_info",
        "Static facts about the GPU as labels; always 1.",
    );
    let mut up = Family::gauge(
        "gpu_up",
        "1 while the GPU answers NVML, 0 once it is lost (GPU_IS_LOST).",
    );
    let mut util = Family::gauge(
        "gpu_utilization_ratio",
        "Fraction of the last sample period in which a kernel ran on the GPU (0..1).",
    );
    let mut mem_util = Family::gauge(
        "gpu_memory_copy_utilization_ratio",
        "Fraction of the last sample period in which device memory was read or written (0..1).",
    );
    let mut mem_used = Family::gauge("gpu_memory_used_bytes", "Device memory in use.");
    let mut mem_total = Family::gauge("gpu_memory_total_bytes", "Device memory installed.");
    let mut power = Family::gauge("gpu_power_usage_watts", "Power draw of the GPU board.");
    let mut power_limit = Family::gauge(
        "gpu_power_limit_watts",
        "Power limit enforced on the GPU (the lower of the management and the board limit).",
    );
    let mut energy = Family::counter(
        "gpu_energy_consumption_joules",
        "Energy the GPU used since the driver was loaded.",
    );
    let mut temp = Family::gauge("gpu_temperature_celsius", "GPU core temperature.");
    let mut sm_clock = Family::gauge("gpu_sm_clock_hertz", "Current SM clock.");
    let mut mem_clock = Family::gauge("gpu_memory_clock_hertz", "Current memory clock.");
    let mut enc = Family::gauge(
        "gpu_encoder_utilization_ratio",
        "Video encoder utilization (0..1).",
    );
    let mut dec = Family::gauge(
        "gpu_decoder_utilization_ratio",
        "Video decoder utilization (0..1).",
    );
    let mut throttle = Family::gauge(
        "gpu_clock_throttle_active",
        "1 while the reason in the `reason` label holds the clocks down, else 0.",
    );
    let mut ecc = Family::counter(
        "gpu_ecc_errors",
        "ECC errors since the driver was loaded (volatile counters), by `type` corrected|uncorrected.",
    );
    let mut pcie = Family::counter(
        "gpu_pcie_replay",
        "PCIe replays since the driver was loaded.",
    );
    let mut xid = Family::counter(
        "gpu_xid_errors",
        "XID errors NVML reported since the exporter started, by `xid` code.",
    );
    let mut xid_all = Family::counter(
        "gpu_xid_events",
        "All XID errors NVML reported since the exporter started; starts at 0 so increase() sees the first.",
    );
    let mut mig_mem_used = Family::gauge(
        "gpu_mig_memory_used_bytes",
        "Device memory in use by the MIG instance.",
    );
    let mut mig_mem_total = Family::gauge(
        "gpu_mig_memory_total_bytes",
        "Device memory of the MIG instance.",
    );
    let mut mig_info = Family::gauge(
        "gpu_mig_info",
        "One series per MIG instance of a GPU in MIG mode; always 1.",
    );

    for g in &s.gpus {
        let labels = || gpu_labels(s, g);
        let mut info_labels = labels();
        info_labels.push((
            "driver_version",
            s.driver_version.clone().unwrap_or_default(),
        ));
        info_labels.push(("cuda_version", s.cuda_version.clone().unwrap_or_default()));
        info_labels.push(("pci_bus_id", g.pci_bus_id.clone().unwrap_or_default()));
        info_labels.push((
            "mig_mode",
            match g.mig_enabled {
                Some(true) => "enabled",
                Some(false) => "disabled",
                None => "unsupported",
            }
            .to_string(),
        ));
        info.push(info_labels, 1.0);
        up.push(labels(), if g.up { 1.0 } else { 0.0 });
        util.push_opt(labels, g.utilization_ratio);
        mem_util.push_opt(labels, g.memory_copy_utilization_ratio);
        mem_used.push_opt(labels, g.memory_used_bytes.map(|v| v as f64));
        mem_total.push_opt(labels, g.memory_total_bytes.map(|v| v as f64));
        power.push_opt(labels, g.power_watts);
        power_limit.push_opt(labels, g.power_limit_watts);
        energy.push_opt(labels, g.energy_joules);
        temp.push_opt(labels, g.temperature_celsius);
        sm_clock.push_opt(labels, g.sm_clock_hz);
        mem_clock.push_opt(labels, g.memory_clock_hz);
        enc.push_opt(labels, g.encoder_utilization_ratio);
        dec.push_opt(labels, g.decoder_utilization_ratio);
        if let Some(bits) = g.throttle_reasons {
            for (reason, bit) in THROTTLE_REASONS {
                let active = if bits & bit != 0 { 1.0 } else { 0.0 };
                throttle.push(with(labels(), "reason", reason.to_string()), active);
            }
        }
        ecc.push_opt(
            || with(labels(), "type", "corrected".into()),
            g.ecc_corrected_total.map(|v| v as f64),
        );
        ecc.push_opt(
            || with(labels(), "type", "uncorrected".into()),
            g.ecc_uncorrected_total.map(|v| v as f64),
        );
        pcie.push_opt(labels, g.pcie_replay_total.map(|v| v as f64));
        if let Some(by_code) = &g.xid_errors {
            xid_all.push(labels(), by_code.values().sum::<u64>() as f64);
            for (code, count) in by_code {
                xid.push(with(labels(), "xid", code.to_string()), *count as f64);
            }
        }
        for m in &g.mig_instances {
            mig_info.push(mig_labels(s, g, m), 1.0);
            mig_mem_used.push_opt(
                || mig_labels(s, g, m),
                m.memory_used_bytes.map(|v| v as f64),
            );
            mig_mem_total.push_opt(
                || mig_labels(s, g, m),
                m.memory_total_bytes.map(|v| v as f64),
            );
        }
    }
    vec![
        info,
        up,
        util,
        mem_util,
        mem_used,
        mem_total,
        power,
        power_limit,
        energy,
        temp,
        sm_clock,
        mem_clock,
        enc,
        dec,
        throttle,
        ecc,
        pcie,
        xid,
        xid_all,
        mig_info,
        mig_mem_used,
        mig_mem_total,
    ]
}
