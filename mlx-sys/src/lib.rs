//! Raw bindings to mlx-c, built against a prebuilt MLX (see build.rs and README.md).

#![allow(non_upper_case_globals)]
#![allow(non_camel_case_types)]
#![allow(non_snake_case)]
#![allow(clippy::all)]

include!(concat!(env!("OUT_DIR"), "/bindings.rs"));

pub mod attention;
pub mod fewrow;
pub mod host_op;
pub mod prefill_attention;
pub mod quant;

/// The MLX backend this crate was built against: `cpu`, `cuda` or `metal`.
pub const BACKEND: &str = env!("MLX_SERVE_MLX_BACKEND");
/// The MLX version of the prebuilt library.
pub const MLX_VERSION: &str = env!("MLX_SERVE_MLX_VERSION");

/// Which BLAS serves MLX's CPU matmuls, as decided at build time and confirmed at run time.
pub fn blas_info() -> String {
    #[cfg(mlx_serve_openblas)]
    {
        extern "C" {
            #[cfg_attr(mlx_serve_scipy_openblas, link_name = "scipy_openblas_get_config")]
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

/// The CPU kernel set OpenBLAS chose at start-up (`openblas_get_corename`), if OpenBLAS serves.
pub fn blas_core() -> Option<String> {
    #[cfg(mlx_serve_openblas)]
    {
        extern "C" {
            #[cfg_attr(mlx_serve_scipy_openblas, link_name = "scipy_openblas_get_corename")]
            fn openblas_get_corename() -> *const std::os::raw::c_char;
        }
        let name = unsafe { std::ffi::CStr::from_ptr(openblas_get_corename()) };
        return Some(name.to_string_lossy().into_owned());
    }
    #[allow(unreachable_code)]
    None
}

/// The OpenBLAS core type this CPU should run, when OpenBLAS chose a weaker one (an older
/// OpenBLAS that does not know a newer CPU falls back to a generic kernel, 1.7–2.8× slower
/// measured on a recent Xeon). `None` when the choice is right or cannot be improved.
pub fn better_blas_core(chosen: &str) -> Option<&'static str> {
    #[cfg(target_arch = "x86_64")]
    {
        let c = chosen.to_ascii_lowercase();
        let avx512 = ["skylakex", "cooperlake", "sapphirerapids"];
        let avx2 = ["haswell", "zen"];
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vl")
            && !avx512.iter().any(|k| c.contains(k))
        {
            return Some("SkylakeX");
        }
        if std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
            && !avx512.iter().chain(avx2.iter()).any(|k| c.contains(k))
        {
            return Some("Haswell");
        }
    }
    let _ = chosen;
    None
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

/// MLX's CPU matmul always calls `cblas_sgemm`, also for the single-row products that dominate
/// decoding, where OpenBLAS's gemm path reaches well under half of the memory bandwidth that its
/// gemv path does. Defined in the executable, this `cblas_sgemm` is what libmlx binds to (first
/// definition in load order); it sends single-row products to `sgemv_` and everything else to
/// OpenBLAS's Fortran `sgemm_`, translating row-major to column-major.
#[cfg(mlx_serve_openblas)]
mod gemv_dispatch {
    use std::os::raw::{c_char, c_float, c_int};

    extern "C" {
        #[cfg_attr(mlx_serve_scipy_openblas, link_name = "scipy_sgemm_")]
        fn sgemm_(
            transa: *const c_char,
            transb: *const c_char,
            m: *const c_int,
            n: *const c_int,
            k: *const c_int,
            alpha: *const c_float,
            a: *const c_float,
            lda: *const c_int,
            b: *const c_float,
            ldb: *const c_int,
            beta: *const c_float,
            c: *mut c_float,
            ldc: *const c_int,
        );
        #[cfg_attr(mlx_serve_scipy_openblas, link_name = "scipy_sgemv_")]
        fn sgemv_(
            trans: *const c_char,
            m: *const c_int,
            n: *const c_int,
            alpha: *const c_float,
            a: *const c_float,
            lda: *const c_int,
            x: *const c_float,
            incx: *const c_int,
            beta: *const c_float,
            y: *mut c_float,
            incy: *const c_int,
        );
    }

    const ROW_MAJOR: c_int = 101;
    const NO_TRANS: c_int = 111;

    fn flag(trans: c_int) -> c_char {
        if trans == NO_TRANS {
            b'N' as c_char
        } else {
            b'T' as c_char
        }
    }

    /// # Safety
    /// The CBLAS contract: pointers and leading dimensions describe valid matrices.
    #[no_mangle]
    pub unsafe extern "C" fn cblas_sgemm(
        order: c_int,
        trans_a: c_int,
        trans_b: c_int,
        m: c_int,
        n: c_int,
        k: c_int,
        alpha: c_float,
        a: *const c_float,
        lda: c_int,
        b: *const c_float,
        ldb: c_int,
        beta: c_float,
        c: *mut c_float,
        ldc: c_int,
    ) {
        if order != ROW_MAJOR {
            // Column-major callers map straight onto Fortran.
            let (ta, tb) = (flag(trans_a), flag(trans_b));
            sgemm_(
                &ta, &tb, &m, &n, &k, &alpha, a, &lda, b, &ldb, &beta, c, &ldc,
            );
            return;
        }
        if trans_a == NO_TRANS && crate::fewrow::serves(m as usize, n as usize, k as usize) {
            let layout = if trans_b == NO_TRANS {
                crate::fewrow::BLayout::NoTrans
            } else {
                crate::fewrow::BLayout::Trans
            };
            crate::fewrow::run(&crate::fewrow::Product {
                m: m as usize,
                n: n as usize,
                k: k as usize,
                alpha,
                a,
                lda: lda as usize,
                b,
                ldb: ldb as usize,
                layout,
                beta,
                c,
                ldc: ldc as usize,
            });
            return;
        }
        if m == 1 {
            // y(1×N) = x(1×K) · op(B): as column-major, y = op(B)ᵀ x.
            let incx: c_int = if trans_a == NO_TRANS { 1 } else { lda };
            let one: c_int = 1;
            if trans_b == NO_TRANS {
                // B is K×N row-major = N×K column-major.
                let t = b'N' as c_char;
                sgemv_(&t, &n, &k, &alpha, b, &ldb, a, &incx, &beta, c, &one);
            } else {
                // B is N×K row-major = K×N column-major.
                let t = b'T' as c_char;
                sgemv_(&t, &k, &n, &alpha, b, &ldb, a, &incx, &beta, c, &one);
            }
            return;
        }
        // Row-major C = op(A)·op(B) is column-major Cᵀ = op(B)ᵀ·op(A)ᵀ.
        let (ta, tb) = (flag(trans_a), flag(trans_b));
        sgemm_(
            &tb, &ta, &n, &m, &k, &alpha, b, &ldb, a, &lda, &beta, c, &ldc,
        );
    }
}

#[cfg(test)]
mod blas_core_tests {
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn a_generic_openblas_kernel_on_an_avx_cpu_gets_a_better_one_and_a_right_one_is_kept() {
        let avx512 = std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vl");
        let avx2 = std::arch::is_x86_feature_detected!("avx2");
        let want = if avx512 {
            Some("SkylakeX")
        } else if avx2 {
            Some("Haswell")
        } else {
            None
        };
        assert_eq!(super::better_blas_core("Prescott"), want);
        assert_eq!(super::better_blas_core("Sandybridge"), want);
        if avx512 {
            assert_eq!(super::better_blas_core("SkylakeX"), None);
            assert_eq!(super::better_blas_core("SapphireRapids"), None);
        }
    }
}
