//! The kernels against a plain product, the pool against one thread, and (ignored) timings.

use super::*;

fn random(len: usize, seed: &mut u64) -> Vec<f32> {
    (0..len)
        .map(|_| {
            *seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((*seed >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        })
        .collect()
}

/// Every shape class (tails in k and n, row groups that do not divide by 4, padded leading
/// dimensions, beta ≠ 0) against a plain triple loop in f64.
#[test]
fn matches_a_plain_product_for_every_isa_and_layout() {
    let mut seed = 7;
    for &(m, n, k) in &[
        (1, 1, 1),
        (1, 37, 19),
        (3, 64, 64),
        (5, 129, 576),
        (8, 200, 33),
        (17, 67, 130),
        (32, 96, 64),
    ] {
        for layout in [BLayout::Trans, BLayout::NoTrans] {
            for beta in [0.0f32, 0.5] {
                let lda = k + 3;
                let (brows, bcols) = match layout {
                    BLayout::Trans => (n, k),
                    BLayout::NoTrans => (k, n),
                };
                let ldb = bcols + 2;
                let ldc = n + 1;
                let a = random(m * lda, &mut seed);
                let b = random(brows * ldb, &mut seed);
                let c0 = random(m * ldc, &mut seed);
                let mut want = c0.clone();
                for i in 0..m {
                    for j in 0..n {
                        let mut dot = 0.0f64;
                        for q in 0..k {
                            let bv = match layout {
                                BLayout::Trans => b[j * ldb + q],
                                BLayout::NoTrans => b[q * ldb + j],
                            };
                            dot += a[i * lda + q] as f64 * bv as f64;
                        }
                        want[i * ldc + j] =
                            (1.5 * dot + beta as f64 * c0[i * ldc + j] as f64) as f32;
                    }
                }
                let mut isas = vec![Isa::Scalar, isa()];
                #[cfg(target_arch = "x86_64")]
                if std::arch::is_x86_feature_detected!("avx2") {
                    isas.push(Isa::Avx2);
                }
                for which in isas {
                    let mut c = c0.clone();
                    let p = Product {
                        m,
                        n,
                        k,
                        alpha: 1.5,
                        a: a.as_ptr(),
                        lda,
                        b: b.as_ptr(),
                        ldb,
                        layout,
                        beta,
                        c: c.as_mut_ptr(),
                        ldc,
                    };
                    unsafe {
                        match which {
                            #[cfg(target_arch = "x86_64")]
                            Isa::Avx512 => x86::columns_avx512(&p, 0, n),
                            #[cfg(target_arch = "x86_64")]
                            Isa::Avx2 => x86::columns_avx2(&p, 0, n),
                            #[cfg(target_arch = "aarch64")]
                            Isa::Neon => arm::columns_neon(&p, 0, n),
                            Isa::Scalar => scalar_columns(&p, 0, n),
                        }
                    }
                    for (idx, (got, want)) in c.iter().zip(&want).enumerate() {
                        let (i, j) = (idx / ldc, idx % ldc);
                        if j >= n {
                            // Padding between rows must stay untouched.
                            assert_eq!(*got, c0[idx], "padding written at {i},{j}");
                            continue;
                        }
                        let tol = 1e-4 * (k as f32).sqrt().max(1.0);
                        assert!(
                            (got - want).abs() <= tol,
                            "{which:?} {layout:?} m{m} n{n} k{k} beta{beta} at {i},{j}: {got} vs {want}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn the_pool_splits_a_large_product_and_gets_the_same_answer() {
    let (m, n, k) = (8, 1000, 300);
    let mut seed = 11;
    let a = random(m * k, &mut seed);
    let b = random(n * k, &mut seed);
    let mut single = vec![0.0f32; m * n];
    let mut split = vec![0.0f32; m * n];
    let mut p = Product {
        m,
        n,
        k,
        alpha: 1.0,
        a: a.as_ptr(),
        lda: k,
        b: b.as_ptr(),
        ldb: k,
        layout: BLayout::Trans,
        beta: 0.0,
        c: single.as_mut_ptr(),
        ldc: n,
    };
    unsafe { columns(&p, 0, n) };
    p.c = split.as_mut_ptr();
    for _ in 0..50 {
        unsafe { run(&p) };
    }
    assert_eq!(single, split);
}

#[test]
#[ignore]
fn time_shapes() {
    for layout in [BLayout::Trans, BLayout::NoTrans] {
        for m in [1usize, 2, 4, 8, 16, 32] {
            let (n, k) = (960usize, 576usize);
            let a = vec![0.5f32; m * k];
            let b = vec![0.25f32; n * k];
            let mut c = vec![0.0f32; m * n];
            let p = Product {
                m,
                n,
                k,
                alpha: 1.0,
                a: a.as_ptr(),
                lda: k,
                b: b.as_ptr(),
                ldb: if layout == BLayout::Trans { k } else { n },
                layout,
                beta: 0.0,
                c: c.as_mut_ptr(),
                ldc: n,
            };
            let mut best = f64::MAX;
            for _ in 0..50 {
                let t = std::time::Instant::now();
                unsafe { columns(&p, 0, n) };
                best = best.min(t.elapsed().as_secs_f64());
            }
            println!("{layout:?} m={m} {:.1} us", best * 1e6);
        }
    }
}
