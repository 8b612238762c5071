//! Helpers shared by the ABI tests: finding the built cdylib and writing scenario files.
//!
//! Each test file is its own process and so gets its own copy of the library's global
//! state; scenario-dependent checks therefore live in one test function per file.

// Not every test file uses every helper.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nvml_wrapper::Nvml;

/// The cdylib Cargo built next to this test binary (`target/<profile>/libnvidia_ml.so`).
pub fn lib_path() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let deps = exe.parent().expect("deps directory");
    [deps, deps.parent().unwrap_or(deps)]
        .iter()
        .map(|dir| dir.join("libnvidia_ml.so"))
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("libnvidia_ml.so not found near {}", exe.display()))
}

pub fn init() -> Nvml {
    let path = lib_path();
    Nvml::builder()
        .lib_path(path.as_os_str())
        .init()
        .expect("nvmlInit through the stand-in")
}

/// A scenario file in a private temp directory, removed on drop.
pub struct ScenarioFile {
    dir: PathBuf,
    pub path: PathBuf,
}

impl ScenarioFile {
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("nvml-standin-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("scenario.json");
        Self { dir, path }
    }

    /// Writes atomically (rename), so the library never reads a half-written file.
    pub fn write(&self, json: &str) {
        let tmp = self.dir.join("scenario.json.tmp");
        std::fs::write(&tmp, json).expect("write scenario");
        std::fs::rename(&tmp, &self.path).expect("rename scenario");
    }

    /// Points the library at this file; must run before the first NVML call.
    pub fn export(&self) {
        // SAFETY: called at the start of the only test in this process, before any thread
        // that could read the environment exists.
        unsafe { std::env::set_var("GPUSCALE_NVML_SCENARIO", &self.path) };
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ScenarioFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Polls `check` until it returns `Some`, or panics with `what` after `timeout`.
pub fn eventually<T>(timeout: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
