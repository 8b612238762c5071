//! The C ABI at its edges, called through the raw `nvml-wrapper-sys` function table: init
//! failures and refcounting, null pointers, short buffers, bad handles and bad enums.

mod common;

use std::ffi::{CStr, c_char, c_uint};
use std::ptr;

use nvml_wrapper_sys::bindings::*;

const OK: nvmlReturn_t = nvmlReturn_enum_NVML_SUCCESS;
const UNINIT: nvmlReturn_t = nvmlReturn_enum_NVML_ERROR_UNINITIALIZED;
const INVALID: nvmlReturn_t = nvmlReturn_enum_NVML_ERROR_INVALID_ARGUMENT;
const SMALL: nvmlReturn_t = nvmlReturn_enum_NVML_ERROR_INSUFFICIENT_SIZE;

#[test]
fn c_abi_edges() {
    let file = common::ScenarioFile::new("raw");
    file.write("{ not json");
    file.export();
    // SAFETY: loading our own cdylib, whose symbols have the nvml.h signatures.
    let lib = unsafe { NvmlLib::new(common::lib_path()) }.expect("load stand-in");
    let mut count: c_uint = 0;
    unsafe {
        // Nothing works before init; a scenario that never parsed makes init fail.
        assert_eq!(lib.nvmlDeviceGetCount_v2(&mut count), UNINIT);
        assert_eq!(lib.nvmlShutdown(), UNINIT);
        assert_eq!(lib.nvmlInit_v2(), nvmlReturn_enum_NVML_ERROR_UNKNOWN);
        assert_eq!(lib.nvmlDeviceGetCount_v2(&mut count), UNINIT);

        // Scenario-driven init errors.
        file.write(r#"{"init_error": "driver_not_loaded"}"#);
        assert_eq!(
            lib.nvmlInit_v2(),
            nvmlReturn_enum_NVML_ERROR_DRIVER_NOT_LOADED
        );
        file.write(r#"{"init_error": "no_permission", "gpus": []}"#);
        assert_eq!(
            lib.nvmlInitWithFlags(0),
            nvmlReturn_enum_NVML_ERROR_NO_PERMISSION
        );
        assert_eq!(lib.nvmlDeviceGetCount_v2(&mut count), UNINIT);

        file.write(
            r#"{"gpus": [{"processes": [{"pid": 1}, {"pid": 2, "used_memory_bytes": 4096}]}, {}]}"#,
        );
        assert_eq!(lib.nvmlInit_v2(), OK);
        assert_eq!(lib.nvmlDeviceGetCount_v2(&mut count), OK);
        assert_eq!(count, 2);

        // Null out-pointers.
        assert_eq!(lib.nvmlDeviceGetCount_v2(ptr::null_mut()), INVALID);
        assert_eq!(
            lib.nvmlDeviceGetHandleByIndex_v2(0, ptr::null_mut()),
            INVALID
        );
        let mut dev: nvmlDevice_t = ptr::null_mut();
        assert_eq!(lib.nvmlDeviceGetHandleByIndex_v2(0, &mut dev), OK);
        assert!(!dev.is_null());
        assert_eq!(lib.nvmlDeviceGetName(dev, ptr::null_mut(), 96), INVALID);
        assert_eq!(lib.nvmlDeviceGetPowerUsage(dev, ptr::null_mut()), INVALID);
        assert_eq!(
            lib.nvmlDeviceGetUtilizationRates(dev, ptr::null_mut()),
            INVALID
        );
        assert_eq!(
            lib.nvmlDeviceGetMigMode(dev, &mut count, ptr::null_mut()),
            INVALID
        );
        assert_eq!(
            lib.nvmlDeviceGetHandleByUUID(ptr::null(), &mut dev),
            INVALID
        );
        assert_eq!(
            lib.nvmlSystemGetCudaDriverVersion_v2(ptr::null_mut()),
            INVALID
        );
        assert_eq!(
            lib.nvmlDeviceGetComputeRunningProcesses_v3(dev, ptr::null_mut(), ptr::null_mut()),
            INVALID
        );

        // Strings: exact fit with the NUL, refusal one byte short, nothing written past it.
        let name = "NVIDIA A100-SXM4-80GB";
        let mut buf = [0x7f as c_char; 32];
        assert_eq!(
            lib.nvmlDeviceGetName(dev, buf.as_mut_ptr(), name.len() as c_uint),
            SMALL
        );
        assert_eq!(
            lib.nvmlDeviceGetName(dev, buf.as_mut_ptr(), name.len() as c_uint + 1),
            OK
        );
        assert_eq!(CStr::from_ptr(buf.as_ptr()).to_str().expect("utf-8"), name);
        assert_eq!(buf[name.len() + 1], 0x7f, "no write past the terminator");
        assert_eq!(lib.nvmlSystemGetDriverVersion(buf.as_mut_ptr(), 4), SMALL);
        assert_eq!(lib.nvmlSystemGetDriverVersion(buf.as_mut_ptr(), 0), SMALL);

        // Handles that were never handed out.
        let mut power: c_uint = 0;
        for bogus in [0usize, 1, 0x12345, 3 << 8, (1 << 8) | 1] {
            assert_eq!(
                lib.nvmlDeviceGetPowerUsage(ptr::without_provenance_mut(bogus), &mut power),
                INVALID,
                "handle {bogus:#x}"
            );
        }
        assert_eq!(lib.nvmlDeviceGetHandleByIndex_v2(2, &mut dev), INVALID);
        assert_eq!(lib.nvmlDeviceGetHandleByIndex_v2(0, &mut dev), OK);
        let unknown = c"GPU-00000000-0000-0000-0000-000000000000";
        let mut found: nvmlDevice_t = ptr::null_mut();
        assert_eq!(
            lib.nvmlDeviceGetHandleByUUID(unknown.as_ptr(), &mut found),
            nvmlReturn_enum_NVML_ERROR_NOT_FOUND
        );

        // Enumerations outside nvml.h's range.
        let mut value: c_uint = 0;
        assert_eq!(lib.nvmlDeviceGetTemperature(dev, 1, &mut value), INVALID);
        assert_eq!(lib.nvmlDeviceGetClockInfo(dev, 9, &mut value), INVALID);
        let mut ecc = 0u64;
        assert_eq!(
            lib.nvmlDeviceGetTotalEccErrors(dev, 2, 0, &mut ecc),
            INVALID
        );

        // Versioned structs are checked like NVML does.
        let mut mem: nvmlMemory_v2_t = std::mem::zeroed();
        assert_eq!(
            lib.nvmlDeviceGetMemoryInfo_v2(dev, &mut mem),
            nvmlReturn_enum_NVML_ERROR_ARGUMENT_VERSION_MISMATCH
        );
        let mut mem_v1: nvmlMemory_t = std::mem::zeroed();
        assert_eq!(lib.nvmlDeviceGetMemoryInfo(dev, &mut mem_v1), OK);
        assert_eq!(mem_v1.total, 80 << 30);

        // Process lists follow NVML's sizing protocol, in every struct version.
        count = 0;
        assert_eq!(
            lib.nvmlDeviceGetComputeRunningProcesses_v3(dev, &mut count, ptr::null_mut()),
            SMALL
        );
        assert_eq!(count, 2);
        let mut infos: [nvmlProcessInfo_t; 2] = std::mem::zeroed();
        count = 1;
        assert_eq!(
            lib.nvmlDeviceGetComputeRunningProcesses_v3(dev, &mut count, infos.as_mut_ptr()),
            SMALL
        );
        count = 2;
        assert_eq!(
            lib.nvmlDeviceGetComputeRunningProcesses_v3(dev, &mut count, infos.as_mut_ptr()),
            OK
        );
        assert_eq!(
            (infos[1].pid, infos[1].usedGpuMemory, infos[1].gpuInstanceId),
            (2, 4096, u32::MAX)
        );
        let mut v1: [nvmlProcessInfo_v1_t; 4] = std::mem::zeroed();
        count = 4;
        assert_eq!(
            lib.nvmlDeviceGetComputeRunningProcesses(dev, &mut count, v1.as_mut_ptr()),
            OK
        );
        assert_eq!((count, v1[0].pid), (2, 1));

        // Event sets.
        let mut set: nvmlEventSet_t = ptr::null_mut();
        assert_eq!(lib.nvmlEventSetCreate(&mut set), OK);
        assert_eq!(
            lib.nvmlDeviceRegisterEvents(dev, 1 << 40, set),
            nvmlReturn_enum_NVML_ERROR_NOT_SUPPORTED
        );
        assert_eq!(lib.nvmlEventSetWait_v2(set, ptr::null_mut(), 0), INVALID);
        let mut data: nvmlEventData_t = std::mem::zeroed();
        assert_eq!(
            lib.nvmlEventSetWait_v2(set, &mut data, 0),
            nvmlReturn_enum_NVML_ERROR_TIMEOUT
        );
        assert_eq!(lib.nvmlEventSetFree(set), OK);
        assert_eq!(lib.nvmlEventSetFree(set), INVALID);
        assert_eq!(lib.nvmlEventSetWait_v2(dev.cast(), &mut data, 0), INVALID);

        let lost = CStr::from_ptr(lib.nvmlErrorString(nvmlReturn_enum_NVML_ERROR_GPU_IS_LOST));
        assert_eq!(lost, c"GPU is lost");
        assert_eq!(CStr::from_ptr(lib.nvmlErrorString(12345)), c"Unknown Error");

        // Init is reference-counted.
        assert_eq!(lib.nvmlInit(), OK);
        assert_eq!(lib.nvmlShutdown(), OK);
        assert_eq!(lib.nvmlDeviceGetCount_v2(&mut count), OK, "one user left");
        assert_eq!(lib.nvmlShutdown(), OK);
        assert_eq!(lib.nvmlDeviceGetCount_v2(&mut count), UNINIT);
        assert_eq!(lib.nvmlDeviceGetPowerUsage(dev, &mut power), UNINIT);
        assert_eq!(lib.nvmlShutdown(), UNINIT);
    }
}
