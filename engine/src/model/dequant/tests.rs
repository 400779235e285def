//! Dequantizers against vectors from the `gguf` Python package
//! (`testdata/gen_dequant_vectors.py` wrote `testdata/dequant_vectors.json`).

use super::*;

fn fixture() -> serde_json::Value {
    serde_json::from_str(include_str!("../testdata/dequant_vectors.json"))
        .expect("fixture is valid JSON")
}

fn check_against_python(name: &str) {
    let fx = fixture();
    let case = &fx[name];
    let ty = GgmlType::from_id(case["type"].as_u64().expect("type") as u32);
    let n = case["n"].as_u64().expect("n") as usize;
    let raw = hex::decode(case["raw"].as_str().expect("raw")).expect("hex");
    let expected: Vec<f32> = hex::decode(case["expected"].as_str().expect("expected"))
        .expect("hex")
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let got = dequantize(ty, &raw, n).expect("dequantize");
    assert_eq!(got.len(), expected.len());
    let scale = expected.iter().fold(0f32, |m, v| m.max(v.abs()));
    for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
        // Relative to the element, with the block's magnitude as the floor so that values
        // that cancel to ~0 (d*q - m) do not demand impossible precision.
        let tol = 1e-6 * e.abs().max(scale * 1e-3);
        assert!((g - e).abs() <= tol, "{name}[{i}]: got {g}, python {e}");
    }
}

macro_rules! python_vector_tests {
    ($($test:ident => $name:literal),* $(,)?) => {
        $(#[test] fn $test() { check_against_python($name); })*
    };
}

python_vector_tests! {
    f32_matches_python => "F32",
    f16_matches_python => "F16",
    bf16_matches_python => "BF16",
    q4_0_matches_python => "Q4_0",
    q4_1_matches_python => "Q4_1",
    q5_0_matches_python => "Q5_0",
    q5_1_matches_python => "Q5_1",
    q8_0_matches_python => "Q8_0",
    q2_k_matches_python => "Q2_K",
    q3_k_matches_python => "Q3_K",
    q4_k_matches_python => "Q4_K",
    q5_k_matches_python => "Q5_K",
    q6_k_matches_python => "Q6_K",
}

#[test]
fn q8_k_scales_signed_bytes_by_f32_delta() {
    let mut block = vec![0u8; 292];
    block[0..4].copy_from_slice(&0.5f32.to_le_bytes());
    for i in 0..256 {
        block[4 + i] = (i as i32 - 128) as i8 as u8;
    }
    let got = dequantize(GgmlType::Q8K, &block, 256).expect("dequantize");
    for (i, v) in got.iter().enumerate() {
        assert_eq!(*v, (i as f32 - 128.0) * 0.5);
    }
}

#[test]
fn wrong_byte_count_is_a_size_error() {
    let err = dequantize(GgmlType::Q4_0, &[0u8; 17], 32).unwrap_err();
    assert!(matches!(
        err,
        DequantError::Size {
            expected: 18,
            actual: 17,
            ..
        }
    ));
    let err = dequantize(GgmlType::Q4K, &[0u8; 144], 100).unwrap_err();
    assert!(matches!(err, DequantError::Size { expected: 0, .. }));
}

#[test]
fn unknown_type_is_unsupported() {
    let err = dequantize(GgmlType::from_id(16), &[0u8; 66], 256).unwrap_err();
    assert_eq!(err, DequantError::Unsupported("ggml_type(16)".into()));
}
