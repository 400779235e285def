//! Every SIMD dequantizer and the product kernel against plain Rust references on random blocks.

use super::*;

pub(super) struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    pub fn unit(&mut self) -> f32 {
        (self.next() as f32 / (1u64 << 31) as f32) - 0.5
    }
}

/// f32 to IEEE half, round to nearest (test data only: normal range, no overflow).
fn f32_to_f16(v: f32) -> u16 {
    let bits = v.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exp = ((bits >> 23) & 0xff) as i32 - 127 + 15;
    if v == 0.0 || exp <= 0 {
        return sign;
    }
    let mant = bits & 0x7f_ffff;
    let mut h = ((exp as u32) << 10) | (mant >> 13);
    if mant & 0x1000 != 0 {
        h += 1;
    }
    sign | h as u16
}

/// `blocks` random blocks of a type: random quants, scales around 0.01, minimums around ±0.1.
pub(super) fn random_blocks(ggml_type: u32, blocks: usize, rng: &mut Rng) -> Vec<u8> {
    let bb = block_bytes(ggml_type).unwrap();
    let mut out = vec![0u8; blocks * bb];
    for block in out.chunks_mut(bb) {
        for b in block.iter_mut() {
            *b = rng.next() as u8;
        }
        let d = f32_to_f16(0.002 + 0.02 * (rng.unit() + 0.5)).to_le_bytes();
        let at = if ggml_type == Q6_K { 208 } else { 0 };
        block[at..at + 2].copy_from_slice(&d);
        if ggml_type == Q4_1 || ggml_type == Q4_K {
            let m = f32_to_f16(0.02 * (rng.unit() + 0.5)).to_le_bytes();
            block[2..4].copy_from_slice(&m);
        }
    }
    out
}

pub(super) const TYPES: [u32; 6] = [Q4_0, Q4_1, Q5_0, Q8_0, Q4_K, Q6_K];

#[test]
fn f16_conversion_matches_known_values() {
    assert_eq!(f16_to_f32(0x3c00), 1.0);
    assert_eq!(f16_to_f32(0xc000), -2.0);
    assert_eq!(f16_to_f32(0x7bff), 65504.0);
    assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
    assert_eq!(f16_to_f32(0x8000), -0.0);
    assert!(f16_to_f32(0x7c00).is_infinite());
}

#[test]
fn reference_dequantizer_follows_the_ggml_layouts() {
    // One hand-built block per type, d = 0.5.
    let d = f32_to_f16(0.5).to_le_bytes();
    let mut q40 = vec![d[0], d[1]];
    q40.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
    let mut out = [0f32; 32];
    unsafe { dequant_scalar(Q4_0, q40.as_ptr(), 1, out.as_mut_ptr()) };
    assert_eq!(out[0], -4.0); // (0 - 8) · 0.5
    assert_eq!(out[15], 3.5); // (15 - 8) · 0.5
    assert_eq!(out[16], 3.5); // high nibble of byte 0
    assert_eq!(out[31], -4.0);

    let mut q50 = vec![d[0], d[1]];
    q50.extend(0x8000_0001u32.to_le_bytes()); // fifth bit of elements 0 and 31
    q50.extend([0u8; 16]);
    unsafe { dequant_scalar(Q5_0, q50.as_ptr(), 1, out.as_mut_ptr()) };
    assert_eq!(out[0], 0.0); // (16 - 16) · 0.5
    assert_eq!(out[1], -8.0);
    assert_eq!(out[31], 0.0);

    let mut q80 = vec![d[0], d[1]];
    q80.extend((0..32).map(|j| (j as i8 - 16) as u8));
    unsafe { dequant_scalar(Q8_0, q80.as_ptr(), 1, out.as_mut_ptr()) };
    assert_eq!(out[0], -8.0);
    assert_eq!(out[31], 7.5);
}

#[test]
fn simd_dequantizers_match_the_reference_on_random_blocks() {
    let mut rng = Rng(3);
    for t in TYPES {
        let blocks = 37;
        let data = random_blocks(t, blocks, &mut rng);
        let mut want = vec![0f32; blocks * block_elems(t)];
        unsafe { dequant_scalar(t, data.as_ptr(), blocks, want.as_mut_ptr()) };
        let mut paths: Vec<(&str, unsafe fn(u32, *const u8, usize, *mut f32))> =
            vec![("dispatch", dequant)];
        // The K-quants have no hand-written path: the dispatcher takes the reference loop.
        #[cfg(target_arch = "x86_64")]
        if block_elems(t) == BLOCK {
            if std::arch::is_x86_feature_detected!("avx512f") {
                paths.push(("avx512", x86::dequant_avx512));
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                paths.push(("avx2", x86::dequant_avx2));
            }
        }
        for (name, f) in paths {
            let mut got = vec![f32::NAN; blocks * block_elems(t)];
            unsafe { f(t, data.as_ptr(), blocks, got.as_mut_ptr()) };
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                // FMA versus multiply-then-add: at most one rounding apart.
                assert!(
                    (g - w).abs() <= 1e-6 * (1.0 + w.abs()),
                    "type {t} {name} element {i}: {g} vs {w}"
                );
            }
        }
    }
}

/// `x · Wᵀ` in f64 over the reference dequantization.
pub(super) fn reference_product(
    t: u32,
    x: &[f32],
    m: usize,
    k: usize,
    w: &[u8],
    n: usize,
) -> Vec<f64> {
    let mut dense = vec![0f32; n * k];
    let blocks = n * k / block_elems(t);
    unsafe { dequant_scalar(t, w.as_ptr(), blocks, dense.as_mut_ptr()) };
    let mut out = vec![0f64; m * n];
    for i in 0..m {
        for j in 0..n {
            out[i * n + j] = (0..k)
                .map(|q| x[i * k + q] as f64 * dense[j * k + q] as f64)
                .sum();
        }
    }
    out
}

/// How far rounding the activations to 8 bits can move each output of a few-row product on the
/// integer path: every `x` moves by at most half its block's step `max|x|/127`, so an output by
/// at most `Σ |w|·step/2`. Zero where the path keeps float activations.
pub(super) fn activation_bound(
    t: u32,
    x: &[f32],
    m: usize,
    k: usize,
    w: &[u8],
    n: usize,
) -> Vec<f64> {
    let int_path = cfg!(target_arch = "x86_64") && m <= super::int_max_rows();
    if !int_path {
        return vec![0.0; m * n];
    }
    let mut dense = vec![0f32; n * k];
    unsafe { dequant_scalar(t, w.as_ptr(), n * k / block_elems(t), dense.as_mut_ptr()) };
    let step: Vec<f64> = x
        .chunks(BLOCK)
        .map(|b| b.iter().fold(0f32, |a, v| a.max(v.abs())) as f64 / 127.0)
        .collect();
    let mut out = vec![0f64; m * n];
    for i in 0..m {
        for j in 0..n {
            out[i * n + j] = (0..k)
                .map(|q| dense[j * k + q].abs() as f64 * step[(i * k + q) / BLOCK] / 2.0)
                .sum::<f64>()
                * 1.001;
        }
    }
    out
}

#[test]
fn products_match_the_reference_for_decode_few_and_many_rows() {
    let mut rng = Rng(11);
    // Rows: decode (1), few-row tiles with tails (2, 3, 8, 17, 32), prefill tiles (33, 70);
    // columns not a multiple of 4 and large enough to take the threaded path.
    for &(m, n, k) in &[
        (1, 7, 32),
        (1, 1027, 576),
        (2, 130, 64),
        (3, 33, 96),
        (8, 300, 256),
        (17, 65, 128),
        (32, 96, 64),
        (33, 100, 192),
        (70, 1300, 160),
        (1, 300, 512),
        (5, 64, 256),
        (40, 70, 768),
    ] {
        for t in TYPES.into_iter().filter(|&t| k % block_elems(t) == 0) {
            let w = random_blocks(t, n * k / block_elems(t), &mut rng);
            let x: Vec<f32> = (0..m * k).map(|_| rng.unit()).collect();
            let want = reference_product(t, &x, m, k, &w, n);
            let mut got = vec![f32::NAN; m * n];
            unsafe {
                qmm_kernel(
                    x.as_ptr(),
                    m as i64,
                    k as i64,
                    w.as_ptr(),
                    n as i64,
                    t,
                    got.as_mut_ptr(),
                )
            };
            let scale: f64 = want.iter().map(|v| v.abs()).fold(0.0, f64::max);
            let bound = activation_bound(t, &x, m, k, &w, n);
            for (idx, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (*g as f64 - w).abs() <= 1e-5 * scale.max(1.0) + bound[idx],
                    "type {t} m{m} n{n} k{k} at {}: {g} vs {w}",
                    idx
                );
            }
        }
    }
}

#[test]
fn dequant_kernel_gives_rows_in_order() {
    let mut rng = Rng(5);
    for t in TYPES {
        let (rows, k) = (5, 512);
        let blocks = rows * k / block_elems(t);
        let w = random_blocks(t, blocks, &mut rng);
        let mut want = vec![0f32; rows * k];
        unsafe { dequant_scalar(t, w.as_ptr(), blocks, want.as_mut_ptr()) };
        let mut got = vec![0f32; rows * k];
        unsafe { dequant_kernel(w.as_ptr(), rows as i64, k as i64, t, got.as_mut_ptr()) };
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() <= 1e-6 * (1.0 + w.abs()));
        }
    }
}

#[test]
fn vectorized_activation_quantizer_matches_the_plain_loop() {
    let mut rng = Rng(7);
    let (m, k) = (3, 320);
    let mut x: Vec<f32> = (0..m * k).map(|_| 4.0 * rng.unit()).collect();
    x[32..64].fill(0.0); // an all-zero block keeps scale 0
    let want = q8::quantize_scalar(&x, m, k);
    let got = unsafe { q8::Q8Rows::quantize(x.as_ptr(), m, k) };
    assert_eq!(got.q, want.q);
    assert_eq!(got.d, want.d);
    assert_eq!(got.s, want.s);
    assert_eq!(got.d[1], 0.0);
    for (e, v) in x[..k].iter().enumerate() {
        assert!((got.value(0, e) - v).abs() <= got.d[e / BLOCK] / 2.0 * 1.0001);
    }
}

/// Every integer instruction set this CPU runs: AVX2 always (with AVX2), VNNI where present.
#[cfg(target_arch = "x86_64")]
pub(super) fn cpu_isas() -> Vec<super::idot::IntIsa> {
    use super::idot::{int_isa, IntIsa};
    match int_isa() {
        Some(IntIsa::Vnni) => vec![IntIsa::Avx2, IntIsa::Vnni],
        Some(IntIsa::Avx2) => vec![IntIsa::Avx2],
        None => vec![],
    }
}

/// Each integer kernel (every instruction set this CPU has) against `Σ w·x̂` in f64, `w` the
/// reference dequantization and `x̂` the 8-bit activations: the same arithmetic up to float
/// rounding, for tiles of 1–4 activation rows and 1, 2 or 4 weight rows with tails.
#[cfg(target_arch = "x86_64")]
#[test]
fn integer_kernels_match_the_reference_on_quantized_activations() {
    use super::idot::{columns, Job};
    let isas = cpu_isas();
    let mut rng = Rng(13);
    for t in TYPES {
        let k = 512;
        for &(m, n) in &[(1, 11), (2, 5), (3, 6), (5, 9), (8, 3)] {
            let w = random_blocks(t, n * k / block_elems(t), &mut rng);
            let x: Vec<f32> = (0..m * k).map(|_| rng.unit()).collect();
            let q8 = q8::quantize_scalar(&x, m, k);
            let xhat: Vec<f32> = (0..m * k).map(|e| q8.value(e / k, e % k)).collect();
            let want = reference_product(t, &xhat, m, k, &w, n);
            let mut dense = vec![0f32; n * k];
            unsafe { dequant_scalar(t, w.as_ptr(), n * k / block_elems(t), dense.as_mut_ptr()) };
            for &isa in &isas {
                let mut got = vec![f32::NAN; m * n];
                let job = Job {
                    w: w.as_ptr(),
                    row_bytes: k / block_elems(t) * block_bytes(t).unwrap(),
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
