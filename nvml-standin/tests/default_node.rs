//! The built-in node (no scenario file), read through `nvml-wrapper` exactly as the
//! exporter reads it.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use nvml_wrapper::bitmasks::device::ThrottleReasons;
use nvml_wrapper::bitmasks::event::EventTypes;
use nvml_wrapper::enum_wrappers::device::{Clock, EccCounter, MemoryError, TemperatureSensor};
use nvml_wrapper::error::NvmlError;

#[test]
fn default_node_through_nvml_wrapper() {
    // SAFETY: the only test in this process, before any NVML call or extra thread.
    unsafe { std::env::remove_var("GPUSCALE_NVML_SCENARIO") };
    let nvml = common::init();

    assert_eq!(nvml.sys_driver_version().expect("driver"), "550.54.15");
    assert_eq!(nvml.sys_nvml_version().expect("nvml"), "12.550.54.15");
    assert_eq!(nvml.sys_cuda_driver_version().expect("cuda"), 12040);
    assert_eq!(nvml.device_count().expect("count"), 4);

    let mut uuids = HashSet::new();
    for (i, bus) in [
        "00000000:07:00.0",
        "00000000:0F:00.0",
        "00000000:47:00.0",
        "00000000:4E:00.0",
    ]
    .into_iter()
    .enumerate()
    {
        let d = nvml.device_by_index(i as u32).expect("handle");
        assert_eq!(d.index().expect("index"), i as u32);
        assert_eq!(d.minor_number().expect("minor"), i as u32);
        assert_eq!(d.name().expect("name"), "NVIDIA A100-SXM4-80GB");
        let uuid = d.uuid().expect("uuid");
        assert!(uuid.starts_with("GPU-"), "{uuid}");
        assert!(uuids.insert(uuid.clone()), "unique uuid");
        assert_eq!(
            nvml.device_by_uuid(uuid.as_str())
                .expect("by uuid")
                .index()
                .expect("index"),
            i as u32
        );
        let pci = d.pci_info().expect("pci");
        assert_eq!(pci.bus_id, bus);
        assert_eq!(
            nvml.device_by_pci_bus_id(bus)
                .expect("by pci")
                .index()
                .expect("index"),
            i as u32
        );

        let util = d.utilization_rates().expect("utilization");
        assert!(util.gpu <= 100 && util.memory <= 100, "{util:?}");
        let mem = d.memory_info().expect("memory");
        assert_eq!(mem.total, 80 << 30);
        assert_eq!(mem.used + mem.free, mem.total);
        assert!(mem.used > 0);

        let power = d.power_usage().expect("power");
        assert!((70_000..=370_000).contains(&power), "{power} mW");
        assert_eq!(d.enforced_power_limit().expect("limit"), 400_000);
        assert_eq!(d.power_management_limit().expect("limit"), 400_000);
        let temp = d.temperature(TemperatureSensor::Gpu).expect("temperature");
        assert!((30..=70).contains(&temp), "{temp} C");

        let sm = d.clock_info(Clock::SM).expect("sm clock");
        assert!(
            sm == 1095 || sm == 1410 || (1095..=1410).contains(&sm),
            "{sm}"
        );
        assert_eq!(d.clock_info(Clock::Memory).expect("mem clock"), 1593);
        assert_eq!(d.max_clock_info(Clock::SM).expect("max sm"), 1410);
        let enc = d.encoder_utilization().expect("encoder");
        assert_eq!((enc.utilization, enc.sampling_period), (0, 167_000));
        assert!(d.decoder_utilization().expect("decoder").utilization <= 10);

        let supported = d.supported_throttle_reasons().expect("supported reasons");
        assert_eq!(supported.bits(), 0x1FF);
        let current = d.current_throttle_reasons().expect("reasons");
        assert!(supported.contains(current));
        assert!(!current.contains(ThrottleReasons::HW_SLOWDOWN));

        for error in [MemoryError::Corrected, MemoryError::Uncorrected] {
            for counter in [EccCounter::Volatile, EccCounter::Aggregate] {
                assert_eq!(d.total_ecc_errors(error, counter).expect("ecc"), 0);
            }
        }
        assert_eq!(d.pcie_replay_counter().expect("replay"), 0);

        let mig = d.mig_mode().expect("mig mode");
        assert_eq!((mig.current, mig.pending), (0, 0));
        assert_eq!(d.mig_device_count().expect("max mig"), 7);
        assert!(matches!(d.mig_device_by_index(0), Err(NvmlError::NotFound)));
        assert!(!d.mig_is_mig_device_handle().expect("is mig"));
        assert!(d.running_compute_processes().expect("processes").is_empty());
        assert!(matches!(
            d.process_utilization_stats(None),
            Err(NvmlError::NotFound)
        ));
    }

    // Energy is integrated from power: monotonic, and about power x time.
    let d = nvml.device_by_index(0).expect("handle");
    let e1 = d.total_energy_consumption().expect("energy");
    std::thread::sleep(Duration::from_millis(300));
    let e2 = d.total_energy_consumption().expect("energy");
    let e3 = d.total_energy_consumption().expect("energy");
    assert!(e2 > e1 && e3 >= e2, "{e1} {e2} {e3}");
    assert!(
        (10_000..=160_000).contains(&(e2 - e1)),
        "{} mJ in 0.3 s",
        e2 - e1
    );

    // No events on the default node: a wait times out.
    let set = d
        .register_events(
            EventTypes::CRITICAL_XID_ERROR,
            nvml.create_event_set().expect("set"),
        )
        .expect("register");
    assert!(matches!(set.wait(50), Err(NvmlError::Timeout)));
    set.release_events().expect("free");

    // Init is reference-counted: a second user's shutdown leaves the first working.
    let second = common::init();
    drop(second);
    assert_eq!(nvml.device_count().expect("still initialized"), 4);
}
