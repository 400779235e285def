//! Picks the MLX device at start-up and fails clearly when the library lacks it (asking a
//! CPU-only libmlx for the GPU would otherwise panic deep inside mlx-rs).

use mlx_rs::Device;

/// Which device to run on; `Auto` means the GPU when the build has one, else the CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceChoice {
    Auto,
    Cpu,
    Gpu,
}

impl std::str::FromStr for DeviceChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "gpu" | "cuda" | "metal" => Ok(Self::Gpu),
            other => Err(format!("unknown device {other:?}; use auto, cpu or gpu")),
        }
    }
}

fn gpu_available() -> bool {
    let mut available = false;
    // SAFETY: plain mlx-c calls on a device handle we create and free here.
    unsafe {
        let dev = mlx_sys::mlx_device_new_type(mlx_sys::mlx_device_type__MLX_GPU, 0);
        let status = mlx_sys::mlx_device_is_available(&mut available, dev);
        mlx_sys::mlx_device_free(dev);
        status == 0 && available
    }
}

/// Makes the chosen device MLX's default on this thread; returns the backend name to report.
pub fn select(choice: DeviceChoice) -> Result<&'static str, String> {
    let gpu = gpu_available();
    let use_gpu = match choice {
        DeviceChoice::Cpu => false,
        DeviceChoice::Auto => gpu,
        DeviceChoice::Gpu if gpu => true,
        DeviceChoice::Gpu => {
            return Err(format!(
                "the GPU was requested but this build's MLX ({} backend, MLX {}) has none; \
                 rebuild with MLX_SERVE_BACKEND=cuda or metal, or use device = \"cpu\"",
                mlx_sys::BACKEND,
                mlx_sys::MLX_VERSION
            ))
        }
    };
    if use_gpu {
        Device::set_default(&Device::gpu());
        Ok(if cfg!(target_os = "macos") {
            "metal"
        } else {
            "cuda"
        })
    } else {
        Device::set_default(&Device::cpu());
        Ok("cpu")
    }
}
