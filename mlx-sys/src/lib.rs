//! Raw bindings to mlx-c, built against a prebuilt MLX (see build.rs and README.md).

#![allow(non_upper_case_globals)]
#![allow(non_camel_case_types)]
#![allow(non_snake_case)]
#![allow(clippy::all)]

include!(concat!(env!("OUT_DIR"), "/bindings.rs"));

pub mod fewrow;

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
