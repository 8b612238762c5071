//! dcgm-exporter compatible names, units and labels, so dashboards built for dcgm-exporter
//! (such as Grafana 12239) keep working. Units follow DCGM: percent, MiB, MHz, millijoules.
//!
//! dcgm-exporter types its energy and PCIe replay fields as counters without `_total`; under
//! OpenMetrics a counter's sample must end in `_total`, so they are typed gauge here to keep
//! the names dashboards query (`rate()` works the same on them).

use super::{Family, Labels};
use crate::snapshot::{GpuReading, MigReading, Snapshot};

const MIB: f64 = 1024.0 * 1024.0;

fn labels(s: &Snapshot, g: &GpuReading) -> Labels {
    vec![
        ("gpu", g.index.to_string()),
        ("UUID", g.uuid.clone()),
        ("pci_bus_id", g.pci_bus_id.clone().unwrap_or_default()),
        (
            "device",
            format!("nvidia{}", g.minor_number.unwrap_or(g.index)),
        ),
        ("modelName", g.model.clone()),
        ("Hostname", s.node.clone()),
        (
            "DCGM_FI_DRIVER_VERSION",
            s.driver_version.clone().unwrap_or_default(),
        ),
    ]
}

fn mig_labels(s: &Snapshot, g: &GpuReading, m: &MigReading) -> Labels {
    let mut l = labels(s, g);
    l.push(("GPU_I_PROFILE", m.profile.clone()));
    l.push(("GPU_I_ID", m.index.to_string()));
    l
}

pub(super) fn families(s: &Snapshot) -> Vec<Family> {
    let mut util = Family::gauge("DCGM_FI_DEV_GPU_UTIL", "GPU utilization (in %).");
    let mut copy = Family::gauge("DCGM_FI_DEV_MEM_COPY_UTIL", "Memory utilization (in %).");
    let mut fb_used = Family::gauge("DCGM_FI_DEV_FB_USED", "Framebuffer memory used (in MiB).");
    let mut fb_free = Family::gauge("DCGM_FI_DEV_FB_FREE", "Framebuffer memory free (in MiB).");
    let mut fb_total = Family::gauge("DCGM_FI_DEV_FB_TOTAL", "Total framebuffer memory (in MiB).");
    let mut power = Family::gauge("DCGM_FI_DEV_POWER_USAGE", "Power draw (in W).");
    let mut limit = Family::gauge(
        "DCGM_FI_DEV_POWER_MGMT_LIMIT",
        "Power management limit (in W).",
    );
    let mut energy = Family::gauge(
        "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
        "Total energy consumption since boot (in mJ).",
    );
    let mut temp = Family::gauge("DCGM_FI_DEV_GPU_TEMP", "GPU temperature (in C).");
    let mut sm = Family::gauge("DCGM_FI_DEV_SM_CLOCK", "SM clock frequency (in MHz).");
    let mut mem = Family::gauge("DCGM_FI_DEV_MEM_CLOCK", "Memory clock frequency (in MHz).");
    let mut enc = Family::gauge("DCGM_FI_DEV_ENC_UTIL", "Encoder utilization (in %).");
    let mut dec = Family::gauge("DCGM_FI_DEV_DEC_UTIL", "Decoder utilization (in %).");
    let mut xid = Family::gauge(
        "DCGM_FI_DEV_XID_ERRORS",
        "Value of the last XID error encountered.",
    );
    let mut replay = Family::gauge(
        "DCGM_FI_DEV_PCIE_REPLAY_COUNTER",
        "Total number of PCIe retries.",
    );
    let mut sbe = Family::gauge(
        "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL",
        "Total number of single-bit volatile ECC errors.",
    );
    let mut dbe = Family::gauge(
        "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL",
        "Total number of double-bit volatile ECC errors.",
    );
    let mut throttle = Family::gauge(
        "DCGM_FI_DEV_CLOCK_THROTTLE_REASONS",
        "Current clock throttle reasons (bitmask of DCGM_CLOCKS_THROTTLE_REASON_*).",
    );

    for g in s.gpus.iter().filter(|g| g.up) {
        let l = || labels(s, g);
        util.push_opt(l, g.utilization_ratio.map(|r| r * 100.0));
        copy.push_opt(l, g.memory_copy_utilization_ratio.map(|r| r * 100.0));
        if g.mig_instances.is_empty() {
            fb_used.push_opt(l, g.memory_used_bytes.map(|b| (b as f64 / MIB).floor()));
            fb_total.push_opt(l, g.memory_total_bytes.map(|b| (b as f64 / MIB).floor()));
            let free = g
                .memory_total_bytes
                .zip(g.memory_used_bytes)
                .map(|(t, u)| t.saturating_sub(u));
            fb_free.push_opt(l, free.map(|b| (b as f64 / MIB).floor()));
        }
        power.push_opt(l, g.power_watts);
        limit.push_opt(l, g.power_limit_watts);
        energy.push_opt(l, g.energy_joules.map(|j| (j * 1000.0).round()));
        temp.push_opt(l, g.temperature_celsius);
        sm.push_opt(l, g.sm_clock_hz.map(|hz| hz / 1e6));
        mem.push_opt(l, g.memory_clock_hz.map(|hz| hz / 1e6));
        enc.push_opt(l, g.encoder_utilization_ratio.map(|r| r * 100.0));
        dec.push_opt(l, g.decoder_utilization_ratio.map(|r| r * 100.0));
        // DCGM reports 0 until the first XID; only GPUs that can deliver XID events get it.
        if g.xid_errors.is_some() {
            xid.push(l(), g.last_xid.unwrap_or(0) as f64);
        }
        replay.push_opt(l, g.pcie_replay_total.map(|v| v as f64));
        sbe.push_opt(l, g.ecc_corrected_total.map(|v| v as f64));
        dbe.push_opt(l, g.ecc_uncorrected_total.map(|v| v as f64));
        throttle.push_opt(l, g.throttle_reasons.map(|b| b as f64));
        // On a MIG GPU, dcgm-exporter reports framebuffer per GPU instance.
        for m in &g.mig_instances {
            let ml = || mig_labels(s, g, m);
            fb_used.push_opt(ml, m.memory_used_bytes.map(|b| (b as f64 / MIB).floor()));
            fb_total.push_opt(ml, m.memory_total_bytes.map(|b| (b as f64 / MIB).floor()));
            let free = m
                .memory_total_bytes
                .zip(m.memory_used_bytes)
                .map(|(t, u)| t.saturating_sub(u));
            fb_free.push_opt(ml, free.map(|b| (b as f64 / MIB).floor()));
        }
    }
    vec![
        util, copy, fb_used, fb_free, fb_total, power, limit, energy, temp, sm, mem, enc, dec, xid,
        replay, sbe, dbe, throttle,
    ]
}
