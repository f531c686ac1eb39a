//! The backend chosen at build time by cargo feature: `tch` (libtorch, CUDA or CPU) if enabled,
//! else `cuda` (NVIDIA GPUs through CubeCL), else `wgpu` (any GPU, lavapipe without one), else
//! `ndarray` (CPU, the default).

#[cfg(feature = "tch")]
mod chosen {
    /// Inference backend.
    pub type Inner = burn::backend::LibTorch<f32>;
    /// Name shown to users.
    pub const NAME: &str = "tch";

    /// Parses `cpu` (also `default`: libtorch's own default), `cuda`, `cuda:N` or `mps`.
    pub fn device(spec: &str) -> Result<burn::backend::libtorch::LibTorchDevice, String> {
        use burn::backend::libtorch::LibTorchDevice;
        match spec {
            "cpu" | "default" | "auto" => Ok(LibTorchDevice::Cpu),
            "cuda" | "gpu" => Ok(LibTorchDevice::Cuda(0)),
            "mps" => Ok(LibTorchDevice::Mps),
            s => s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(LibTorchDevice::Cuda)
                .ok_or_else(|| format!("unknown device '{s}' for the tch backend (cpu, cuda, cuda:N, mps)")),
        }
    }
}

#[cfg(all(feature = "cuda", not(feature = "tch")))]
mod chosen {
    /// Inference backend.
    pub type Inner = burn::backend::Cuda<f32, i32>;
    /// Name shown to users.
    pub const NAME: &str = "cuda";

    /// Parses `cuda`, `gpu`, `default` (GPU 0) or `cuda:N` / `gpu:N`, once the CUDA driver
    /// and NVRTC are known to load and to see that GPU ([`crate::cuda_probe`]).
    pub fn device(spec: &str) -> Result<burn::backend::cuda::CudaDevice, String> {
        use burn::backend::cuda::CudaDevice;
        let index = match spec {
            "default" | "auto" | "gpu" | "cuda" => 0,
            s => s
                .strip_prefix("cuda:")
                .or_else(|| s.strip_prefix("gpu:"))
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| format!("unknown device '{s}' for the cuda backend (cuda, cuda:N)"))?,
        };
        let gpus = crate::cuda_probe::probe()?;
        if index >= gpus {
            return Err(format!("no GPU cuda:{index}: the CUDA driver sees {gpus}"));
        }
        Ok(CudaDevice::new(index))
    }
}

#[cfg(all(feature = "wgpu", not(feature = "tch"), not(feature = "cuda")))]
mod chosen {
    /// Inference backend.
    pub type Inner = burn::backend::Wgpu<f32, i32>;
    /// Name shown to users.
    pub const NAME: &str = "wgpu";

    /// Parses `default`, `cpu`, `gpu` or `gpu:N` (discrete GPU N).
    pub fn device(spec: &str) -> Result<burn::backend::wgpu::WgpuDevice, String> {
        use burn::backend::wgpu::WgpuDevice;
        match spec {
            "default" | "auto" | "gpu" | "cuda" => Ok(WgpuDevice::DefaultDevice),
            "cpu" => Ok(WgpuDevice::Cpu),
            s => s
                .strip_prefix("gpu:")
                .or_else(|| s.strip_prefix("cuda:"))
                .and_then(|n| n.parse().ok())
                .map(WgpuDevice::DiscreteGpu)
                .ok_or_else(|| format!("unknown device '{s}' for the wgpu backend (default, cpu, gpu, gpu:N)")),
        }
    }
}

#[cfg(all(feature = "ndarray", not(feature = "tch"), not(feature = "wgpu"), not(feature = "cuda")))]
mod chosen {
    /// Inference backend.
    pub type Inner = burn::backend::NdArray<f32>;
    /// Name shown to users.
    pub const NAME: &str = "ndarray";

    /// Only `cpu` exists.
    pub fn device(spec: &str) -> Result<burn::backend::ndarray::NdArrayDevice, String> {
        match spec {
            "cpu" | "default" | "auto" => Ok(burn::backend::ndarray::NdArrayDevice::Cpu),
            s => Err(format!("unknown device '{s}' for the ndarray backend (cpu only)")),
        }
    }
}

#[cfg(not(any(feature = "ndarray", feature = "tch", feature = "wgpu", feature = "cuda")))]
compile_error!("enable one backend feature: ndarray, tch, cuda or wgpu");

pub use chosen::{device, Inner, NAME};

/// The inference backend with automatic differentiation (needed by attribution).
pub type AutodiffBackend = burn::backend::Autodiff<Inner>;
