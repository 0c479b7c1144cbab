//! Picking the compute device, in one place, at start-up (architecture property 3).
//!
//! Rule: `--backend wgpu` or `--backend cpu` is obeyed; without a flag, wgpu is used when a
//! *hardware* adapter (discrete, integrated or virtual GPU) is found, otherwise burn's `flex`
//! CPU backend. A software adapter such as Mesa's llvmpipe is not counted as a GPU: on this
//! project's machines it measured ~10× slower than flex (see `../shared/docs/stack-notes.md`),
//! but `--backend wgpu` still selects it explicitly.

use std::fmt;
use std::str::FromStr;

use burn::tensor::Device;

/// The backend a user can ask for on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum BackendChoice {
    /// wgpu when a hardware adapter exists, else CPU.
    #[default]
    Auto,
    /// burn's `flex` CPU backend.
    Cpu,
    /// burn's wgpu backend (any adapter wgpu picks, software ones included).
    Wgpu,
}

impl FromStr for BackendChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "cpu" | "flex" => Ok(Self::Cpu),
            "wgpu" | "gpu" => Ok(Self::Wgpu),
            other => Err(format!("unknown backend '{other}': expected auto, cpu or wgpu")),
        }
    }
}

/// The device picked and a human-readable description of it.
#[derive(Clone, Debug)]
pub struct Backend {
    /// The burn device all model code runs on.
    pub device: Device,
    /// Short name: "cpu (flex)" or "wgpu (<adapter>)".
    pub description: String,
    /// True for the CPU backend.
    pub is_cpu: bool,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.description)
    }
}

/// Errors while choosing a backend.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// wgpu was asked for, but this build has no wgpu support.
    #[error("--backend wgpu: this build has no wgpu support (rebuild with the default `wgpu` feature)")]
    WgpuNotBuilt,
    /// wgpu was asked for, but no adapter exists.
    #[error("--backend wgpu: no wgpu adapter found on this machine (use --backend cpu)")]
    NoAdapter,
}

/// The flex CPU device.
pub fn cpu() -> Backend {
    Backend { device: Device::flex(), description: "cpu (flex)".into(), is_cpu: true }
}

/// Whether wgpu finds a hardware GPU adapter (not a software one such as Mesa's lavapipe);
/// probed once per process. `None` in a build without the `wgpu` feature (no probe: the editor
/// then tries eframe's wgpu renderer and falls back to glow).
pub fn hardware_wgpu_adapter() -> Option<bool> {
    #[cfg(feature = "wgpu")]
    {
        Some(probe_wgpu().is_some_and(|(_, hw)| hw))
    }
    #[cfg(not(feature = "wgpu"))]
    {
        None
    }
}

/// Adapter found by wgpu: (name, is hardware GPU), probed once per process.
#[cfg(feature = "wgpu")]
fn probe_wgpu() -> Option<(String, bool)> {
    static PROBE: std::sync::OnceLock<Option<(String, bool)>> = std::sync::OnceLock::new();
    PROBE.get_or_init(probe_wgpu_uncached).clone()
}

#[cfg(feature = "wgpu")]
fn probe_wgpu_uncached() -> Option<(String, bool)> {
    let instance = wgpu::Instance::default();
    let adapters = pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()));
    let mut best: Option<(String, bool)> = None;
    for a in adapters {
        let info = a.get_info();
        let hw = !matches!(info.device_type, wgpu::DeviceType::Cpu | wgpu::DeviceType::Other);
        let desc = format!("{} on {:?}", info.name, info.backend);
        if best.as_ref().is_none_or(|(_, b)| hw && !*b) {
            best = Some((desc, hw));
        }
    }
    best
}

#[cfg(not(feature = "wgpu"))]
fn probe_wgpu() -> Option<(String, bool)> {
    None
}

#[cfg(feature = "wgpu")]
fn wgpu_backend(name: String) -> Backend {
    Backend {
        device: Device::wgpu(burn::tensor::DeviceKind::DefaultDevice),
        description: format!("wgpu ({name})"),
        is_cpu: false,
    }
}

/// Chooses the device according to [`BackendChoice`].
pub fn select(choice: BackendChoice) -> Result<Backend, BackendError> {
    match choice {
        BackendChoice::Cpu => Ok(cpu()),
        BackendChoice::Wgpu => {
            #[cfg(feature = "wgpu")]
            {
                match probe_wgpu() {
                    Some((name, _)) => Ok(wgpu_backend(name)),
                    None => Err(BackendError::NoAdapter),
                }
            }
            #[cfg(not(feature = "wgpu"))]
            Err(BackendError::WgpuNotBuilt)
        }
        BackendChoice::Auto => {
            #[cfg(feature = "wgpu")]
            if let Some((name, true)) = probe_wgpu() {
                return Ok(wgpu_backend(name));
            }
            Ok(cpu())
        }
    }
}
