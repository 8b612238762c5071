//! A stand-in `libnvidia-ml.so` for machines without a GPU.
//!
//! It exports the NVML C functions the exporter reaches through `nvml-wrapper`, with the
//! exact nvml.h ABI (types come from `nvml-wrapper-sys`), and answers them from a scenario
//! file named by `GPUSCALE_NVML_SCENARIO` (or a built-in four-GPU node). The production code
//! path therefore runs unchanged in tests and demos; only `--nvml-library` differs.

mod ffi;
pub mod scenario;
mod state;

pub use state::SCENARIO_ENV;
