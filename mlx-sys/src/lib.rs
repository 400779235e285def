//! Raw bindings to mlx-c, built against a prebuilt MLX (see build.rs and README.md).

#![allow(non_upper_case_globals)]
#![allow(non_camel_case_types)]
#![allow(non_snake_case)]
#![allow(clippy::all)]

include!(concat!(env!("OUT_DIR"), "/bindings.rs"));

/// The MLX backend this crate was built against: `cpu`, `cuda` or `metal`.
pub const BACKEND: &str = env!("MLX_SERVE_MLX_BACKEND");
/// The MLX version of the prebuilt library.
pub const MLX_VERSION: &str = env!("MLX_SERVE_MLX_VERSION");

/// Which BLAS serves MLX's CPU matmuls, as decided at build time and confirmed at run time.
pub fn blas_info() -> String {
    #[cfg(mlx_serve_openblas)]
    {
        extern "C" {
            fn openblas_get_config() -> *const std::os::raw::c_char;
        }
        // Calling into OpenBLAS also keeps it a direct dependency of every binary, which is what
        // puts its cblas_* symbols ahead of the wheel's reference BLAS.
        let config = unsafe { std::ffi::CStr::from_ptr(openblas_get_config()) };
        return format!("OpenBLAS {}", config.to_string_lossy());
    }
    #[allow(unreachable_code)]
    env!("MLX_SERVE_BLAS").to_string()
}

/// mlx-rs seeds its random module from this macOS-only clock; elsewhere a monotonic clock in
/// nanoseconds stands in for it.
#[cfg(not(target_os = "macos"))]
#[no_mangle]
pub extern "C" fn mach_approximate_time() -> u64 {
    use std::time::Instant;
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let start = START.get_or_init(Instant::now);
    start.elapsed().as_nanos() as u64 + 1
}
