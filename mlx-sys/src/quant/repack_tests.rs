//! The interleaved layout: exact round trips, and its kernels against the plain references of
//! `tests` on every instruction set this CPU has.

use super::tests::{activation_bound, random_blocks, reference_product, Rng, TYPES};
use super::*;

#[test]
fn repacking_round_trips_every_block_exactly() {
    let mut rng = Rng(21);
    for t in TYPES {
        let (n, k) = (32, 512);
        let blocks = k / block_elems(t);
        let w = random_blocks(t, n * blocks, &mut rng);
        let r = repack(t, w.clone(), n, k);
        if !cfg!(target_arch = "x86_64") {
            assert_eq!(r.ggml_type, t);
            continue;
        }
        assert_eq!(r.ggml_type, t | REPACKED);
        assert_eq!(
            r.bytes.len(),
            n * blocks * block_bytes(r.ggml_type).unwrap()
        );
        let mut back = vec![0u8; w.len()];
        let group = repack::GROUP * blocks * block_bytes(t).unwrap();
        for (g, dst) in back.chunks_exact_mut(group).enumerate() {
            let src = &r.bytes[g * r.bytes.len() / 2..(g + 1) * r.bytes.len() / 2];
            repack::unrepack_group(t, src, blocks, dst);
        }
        assert!(back == w, "type {t}");
    }
}

#[test]
fn rows_that_do_not_fill_groups_stay_in_the_file_layout() {
    let mut rng = Rng(22);
    let w = random_blocks(Q4_1, 24 * 4, &mut rng);
    let r = repack(Q4_1, w.clone(), 24, 128);
    assert_eq!(r.ggml_type, Q4_1);
    assert!(r.bytes == w);
}

/// Each interleaved kernel against `Σ w·x̂` in f64 (`x̂` the 8-bit activations), for tiles of
/// 1–17 rows with tails and one to three groups.
#[cfg(target_arch = "x86_64")]
#[test]
fn interleaved_kernels_match_the_reference_on_quantized_activations() {
    use super::ileave::{columns, Job};
    let isas = super::tests::cpu_isas();
    let mut rng = Rng(23);
    for t in TYPES {
        let k = 512;
        for &(m, n) in &[
            (1, 16),
            (1, 48),
            (2, 32),
            (3, 16),
            (5, 48),
            (8, 16),
            (9, 32),
            (17, 16),
        ] {
            let w = random_blocks(t, n * k / block_elems(t), &mut rng);
            let r = repack(t, w.clone(), n, k);
            let x: Vec<f32> = (0..m * k).map(|_| rng.unit()).collect();
            let q8 = q8::quantize_scalar(&x, m, k);
            let xhat: Vec<f32> = (0..m * k).map(|e| q8.value(e / k, e % k)).collect();
            let want = reference_product(t, &xhat, m, k, &w, n);
            let mut dense = vec![0f32; n * k];
            unsafe { dequant_scalar(t, w.as_ptr(), n * k / block_elems(t), dense.as_mut_ptr()) };
            for &isa in &isas {
                let mut got = vec![f32::NAN; m * n];
                let job = Job {
                    w: r.bytes.as_ptr(),
                    row_bytes: r.bytes.len() / n,
                    x: &q8,
                    m,
                    out: got.as_mut_ptr(),
                    ldo: n,
                };
                unsafe { columns(isa, t, &job, 0, n) };
                for (idx, (g, w)) in got.iter().zip(&want).enumerate() {
                    let (i, j) = (idx / n, idx % n);
                    let mag: f64 = (0..k)
                        .map(|q| (dense[j * k + q] * xhat[i * k + q]).abs() as f64)
                        .sum();
                    assert!(
                        (*g as f64 - w).abs() <= 1e-5 * mag + 1e-6,
                        "type {t} {isa:?} m{m} n{n} at {idx}: {g} vs {w}"
                    );
                }
            }
        }
    }
}

fn check_product(t: u32, m: usize, n: usize, k: usize, rng: &mut Rng, dequantizing: bool) {
    let w = random_blocks(t, n * k / block_elems(t), rng);
    let r = repack(t, w.clone(), n, k);
    let x: Vec<f32> = (0..m * k).map(|_| rng.unit()).collect();
    let want = reference_product(t, &x, m, k, &w, n);
    let mut got = vec![f32::NAN; m * n];
    unsafe {
        if dequantizing {
            let ops = Operands {
                x: x.as_ptr(),
                m,
                k,
                w: r.bytes.as_ptr(),
                row_bytes: r.bytes.len() / n,
                n,
                ggml_type: r.ggml_type,
                out: got.as_mut_ptr(),
            };
            few_rows(&ops, 0, n);
        } else {
            let p = (x.as_ptr(), r.bytes.as_ptr(), got.as_mut_ptr());
            qmm_kernel(p.0, m as i64, k as i64, p.1, n as i64, r.ggml_type, p.2);
        }
    }
    let scale: f64 = want.iter().map(|v| v.abs()).fold(0.0, f64::max);
    let bound = if dequantizing {
        vec![0.0; m * n]
    } else {
        activation_bound(t, &x, m, k, &w, n)
    };
    for (idx, (g, w)) in got.iter().zip(&want).enumerate() {
        assert!(
            (*g as f64 - w).abs() <= 1e-5 * scale.max(1.0) + bound[idx],
            "type {t} m{m} n{n} k{k} dequantizing {dequantizing} at {idx}: {g} vs {w}"
        );
    }
}

/// Repacked weights through `qmm_kernel` (integer tiles, threaded, and the prefill path that
/// dequantizes groups for `sgemm`) and through the float few-row tile.
#[test]
fn repacked_products_match_the_reference_on_every_path() {
    let mut rng = Rng(24);
    for &(m, n, k) in &[
        (1, 32, 256),
        (1, 1024, 768),
        (2, 48, 512),
        (8, 160, 768),
        (17, 64, 256),
        (33, 96, 512),
        (70, 272, 256),
    ] {
        for t in TYPES.into_iter().filter(|&t| k % block_elems(t) == 0) {
            check_product(t, m, n, k, &mut rng, false);
            if m <= fewrow::MAX_ROWS {
                check_product(t, m, n, k, &mut rng, true);
            }
        }
    }
}

#[test]
fn repacked_weights_dequantize_whole() {
    let mut rng = Rng(25);
    for t in TYPES {
        let (rows, k) = (48, 512);
        let w = random_blocks(t, rows * k / block_elems(t), &mut rng);
        let r = repack(t, w.clone(), rows, k);
        let mut want = vec![0f32; rows * k];
        unsafe { dequant_kernel(w.as_ptr(), rows as i64, k as i64, t, want.as_mut_ptr()) };
        let mut got = vec![f32::NAN; rows * k];
        let p = (r.bytes.as_ptr(), got.as_mut_ptr());
        unsafe { dequant_kernel(p.0, rows as i64, k as i64, r.ggml_type, p.1) };
        assert!(got == want, "type {t}");
    }
}

/// Embedding lookups: any ids (repeated, out of order, one past the end) gather the same rows
/// from the interleaved layout as from the file's, and the file's rows are the dequantized ones.
#[test]
fn gathered_rows_match_in_either_layout() {
    let mut rng = Rng(26);
    let ids: [u32; 7] = [0, 47, 16, 15, 47, 3, 48];
    for t in TYPES {
        let (rows, k) = (48, 512);
        let w = random_blocks(t, rows * k / block_elems(t), &mut rng);
        let mut whole = vec![0f32; rows * k];
        unsafe { dequant_kernel(w.as_ptr(), rows as i64, k as i64, t, whole.as_mut_ptr()) };
        let r = repack(t, w.clone(), rows, k);
        for (bytes, ty) in [(&w, t), (&r.bytes, r.ggml_type)] {
            let mut got = vec![f32::NAN; ids.len() * k];
            let (p, n) = (ids.as_ptr(), ids.len() as i64);
            unsafe {
                gather_kernel(
                    bytes.as_ptr(),
                    rows as i64,
                    k as i64,
                    ty,
                    p,
                    n,
                    got.as_mut_ptr(),
                )
            };
            for (i, &id) in ids.iter().enumerate() {
                let row = &got[i * k..(i + 1) * k];
                if (id as usize) < rows {
                    let want = &whole[id as usize * k..(id as usize + 1) * k];
                    assert!(row == want, "type {ty:#x}, id {id}");
                } else {
                    assert!(row.iter().all(|&v| v == 0.0), "type {ty:#x}, id {id}");
                }
            }
        }
    }
}
