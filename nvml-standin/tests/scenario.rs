//! A scenario file driving everything the exporter must cope with: unsupported fields, a
//! lost GPU, XID events, MIG, processes, and the file changing (or breaking) while running.

mod common;

use std::time::{Duration, Instant};

use nvml_wrapper::bitmasks::device::ThrottleReasons;
use nvml_wrapper::bitmasks::event::EventTypes;
use nvml_wrapper::enum_wrappers::device::{EccCounter, MemoryError};
use nvml_wrapper::enums::device::UsedGpuMemory;
use nvml_wrapper::enums::event::XidError;
use nvml_wrapper::error::NvmlError;
use nvml_wrapper_sys::bindings::nvmlReturn_enum_NVML_SUCCESS;

const GIB: u64 = 1 << 30;

fn scenario(h100_power_watts: f64, extra_gpu: bool) -> String {
    let extra = if extra_gpu {
        r#", {"name": "NVIDIA L4"}"#
    } else {
        ""
    };
    format!(
        r#"{{
  "driver_version": "535.104.05",
  "gpus": [
    {{
      "name": "NVIDIA H100 80GB HBM3",
      "uuid": "GPU-11111111-2222-3333-4444-555555555555",
      "pci_bus_id": "00000000:1A:00.0",
      "utilization_gpu_percent": {{"points": [[0, 10], [1000, 1010]]}},
      "utilization_memory_percent": 150,
      "power_usage_watts": {h100_power_watts},
      "power_limit_watts": 700,
      "energy_joules": {{"points": [[0, 1000], [1000, 2000]]}},
      "throttle_reasons": ["sw_power_cap", "hw_thermal_slowdown"],
      "unsupported": ["encoder_utilization", "ecc"],
      "xid_events": [{{"at_seconds": 0.4, "xid": 48}}, {{"at_seconds": 0.3, "xid": 79}}],
      "processes": [{{"pid": 4242, "used_memory_bytes": {GIB}, "sm_util_percent": 55, "mem_util_percent": 120}}]
    }},
    {{"lost_at_seconds": 1.0}},
    {{
      "mig": {{"instances": [
        {{"uuid": "MIG-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee", "profile": "1g.10gb",
          "gpu_instance_id": 7, "compute_instance_id": 0,
          "memory_total_bytes": {mig_total}, "memory_used_bytes": 1000000000}},
        {{"profile": "3g.40gb", "gpu_instance_id": 2, "compute_instance_id": 1,
          "memory_total_bytes": {mig_big}}}
      ]}},
      "processes": [
        {{"pid": 100, "used_memory_bytes": 5000000000, "mig_instance": 1}},
        {{"pid": 101}}
      ]
    }}{extra}
  ]
}}"#,
        mig_total = 10 * GIB,
        mig_big = 40 * GIB,
    )
}

#[test]
fn scenario_file_drives_the_library() {
    let file = common::ScenarioFile::new("scenario");
    file.write(&scenario(300.5, false));
    file.export();
    let start = Instant::now();
    let nvml = common::init();

    assert_eq!(nvml.sys_driver_version().expect("driver"), "535.104.05");
    assert_eq!(nvml.device_count().expect("count"), 3);

    // Values, conversions and clamping.
    let h100 = nvml.device_by_index(0).expect("gpu 0");
    assert_eq!(h100.name().expect("name"), "NVIDIA H100 80GB HBM3");
    assert_eq!(
        h100.uuid().expect("uuid"),
        "GPU-11111111-2222-3333-4444-555555555555"
    );
    assert_eq!(h100.pci_info().expect("pci").bus_id, "00000000:1A:00.0");
    let util = h100.utilization_rates().expect("utilization");
    assert!((10..=15).contains(&util.gpu), "{util:?}");
    assert_eq!(util.memory, 100, "clamped");
    assert_eq!(h100.power_usage().expect("power"), 300_500);
    assert_eq!(h100.enforced_power_limit().expect("limit"), 700_000);
    let energy = h100.total_energy_consumption().expect("energy");
    assert!((1_000_000..=1_010_000).contains(&energy), "{energy} mJ");
    assert_eq!(
        h100.current_throttle_reasons().expect("reasons"),
        ThrottleReasons::SW_POWER_CAP | ThrottleReasons::HW_THERMAL_SLOWDOWN
    );

    // Unsupported fields say so; the rest of the GPU keeps answering.
    assert!(matches!(
        h100.encoder_utilization(),
        Err(NvmlError::NotSupported)
    ));
    assert!(matches!(
        h100.total_ecc_errors(MemoryError::Corrected, EccCounter::Volatile),
        Err(NvmlError::NotSupported)
    ));
    assert!(h100.decoder_utilization().is_ok());

    // Processes and their utilization.
    let procs = h100.running_compute_processes().expect("processes");
    assert_eq!(procs.len(), 1);
    assert_eq!(procs[0].pid, 4242);
    assert_eq!(procs[0].used_gpu_memory, UsedGpuMemory::Used(GIB));
    assert_eq!(procs[0].gpu_instance_id, None);
    let samples = h100
        .process_utilization_stats(None)
        .expect("process utilization");
    assert_eq!(samples.len(), 1);
    assert_eq!(
        (samples[0].pid, samples[0].sm_util, samples[0].mem_util),
        (4242, 55, 100)
    );
    // Samples are periodic: asking for newer ones gets nothing, or only newer ones.
    match h100.process_utilization_stats(samples[0].timestamp) {
        Err(NvmlError::NotFound) => {}
        Ok(newer) => assert!(newer.iter().all(|s| s.timestamp > samples[0].timestamp)),
        Err(e) => panic!("process utilization: {e}"),
    }

    // MIG.
    let a100 = nvml.device_by_index(2).expect("gpu 2");
    let mode = a100.mig_mode().expect("mig mode");
    assert_eq!((mode.current, mode.pending), (1, 1));
    assert_eq!(a100.mig_device_count().expect("max mig"), 7);
    let small = a100.mig_device_by_index(0).expect("mig 0");
    assert!(small.mig_is_mig_device_handle().expect("is mig"));
    assert_eq!(
        small.uuid().expect("uuid"),
        "MIG-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
    );
    assert_eq!(
        small.name().expect("name"),
        "NVIDIA A100-SXM4-80GB MIG 1g.10gb"
    );
    let mem = small.memory_info().expect("mig memory");
    assert_eq!((mem.total, mem.used), (10 * GIB, 1_000_000_000));
    assert!(matches!(
        small.utilization_rates(),
        Err(NvmlError::NotSupported)
    ));
    assert_eq!(
        small
            .mig_parent_device()
            .expect("parent")
            .uuid()
            .expect("uuid"),
        a100.uuid().expect("uuid")
    );
    assert_eq!(
        nvml.device_by_uuid("MIG-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee")
            .expect("by uuid")
            .name()
            .expect("name"),
        "NVIDIA A100-SXM4-80GB MIG 1g.10gb"
    );
    assert!(matches!(
        a100.mig_device_by_index(2),
        Err(NvmlError::NotFound)
    ));
    let big = a100.mig_device_by_index(1).expect("mig 1");
    assert!(big.uuid().expect("uuid").starts_with("MIG-"));
    let (mut gi, mut ci) = (0, 0);
    // nvml-wrapper 0.13 has no safe wrapper for these two; call them like the C API.
    unsafe {
        assert_eq!(
            nvml.lib().nvmlDeviceGetGpuInstanceId(big.handle(), &mut gi),
            nvmlReturn_enum_NVML_SUCCESS
        );
        assert_eq!(
            nvml.lib()
                .nvmlDeviceGetComputeInstanceId(big.handle(), &mut ci),
            nvmlReturn_enum_NVML_SUCCESS
        );
    }
    assert_eq!((gi, ci), (2, 1));
    let in_mig = big.running_compute_processes().expect("mig processes");
    assert_eq!(in_mig.len(), 1);
    assert_eq!(
        (
            in_mig[0].pid,
            in_mig[0].gpu_instance_id,
            in_mig[0].compute_instance_id
        ),
        (100, Some(2), Some(1))
    );
    let all = a100.running_compute_processes().expect("all processes");
    assert_eq!(all.iter().map(|p| p.pid).collect::<Vec<_>>(), [100, 101]);
    assert_eq!(all[1].gpu_instance_id, None);

    // XID events: delivered in time order, once per set, with the code.
    let set = h100
        .register_events(
            EventTypes::CRITICAL_XID_ERROR,
            nvml.create_event_set().expect("set"),
        )
        .expect("register");
    for expected in [79, 48] {
        let event = set.wait(3_000).expect("xid event");
        assert!(event.event_type.contains(EventTypes::CRITICAL_XID_ERROR));
        assert_eq!(event.event_data, Some(XidError::Value(expected)));
        assert_eq!(
            event.device.uuid().expect("uuid"),
            "GPU-11111111-2222-3333-4444-555555555555"
        );
    }
    assert!(
        start.elapsed() >= Duration::from_millis(400),
        "not before their time"
    );
    assert!(
        matches!(set.wait(100), Err(NvmlError::Timeout)),
        "delivered once"
    );
    let other = h100
        .register_events(
            EventTypes::CRITICAL_XID_ERROR,
            nvml.create_event_set().expect("set"),
        )
        .expect("register");
    assert_eq!(
        other
            .wait(0)
            .expect("each set gets its own copy")
            .event_data,
        Some(XidError::Value(79))
    );

    // The lost GPU: still enumerable, but every query says GpuLost.
    let lost = nvml.device_by_index(1).expect("lost gpu handle");
    common::eventually(Duration::from_secs(3), "GPU 1 lost", || {
        matches!(lost.utilization_rates(), Err(NvmlError::GpuLost)).then_some(())
    });
    assert!(matches!(lost.name(), Err(NvmlError::GpuLost)));
    assert!(matches!(lost.power_usage(), Err(NvmlError::GpuLost)));
    assert!(nvml.device_by_index(1).is_ok());
    assert!(h100.power_usage().is_ok(), "the others keep answering");

    // A rewritten file shows within a collection cycle; the epoch is kept.
    file.write(&scenario(123.0, true));
    common::eventually(Duration::from_secs(2), "new power", || {
        (h100.power_usage().ok()? == 123_000).then_some(())
    });
    assert_eq!(nvml.device_count().expect("count"), 4);
    assert!(
        matches!(lost.name(), Err(NvmlError::GpuLost)),
        "epoch not reset"
    );

    // A broken file keeps the previous scenario.
    file.write(r#"{"gpus": [{"power_usage_wats": 1}]}"#);
    std::thread::sleep(Duration::from_millis(450));
    assert_eq!(nvml.device_count().expect("count"), 4);
    assert_eq!(h100.power_usage().expect("power"), 123_000);

    // And a fixed file is picked up again.
    file.write(&scenario(99.0, false));
    assert_eq!(nvml.device_count().expect("count"), 3);
    assert_eq!(h100.power_usage().expect("power"), 99_000);
}
