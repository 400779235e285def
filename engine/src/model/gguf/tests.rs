//! The reader against GGUF files the tests write byte by byte.

use super::testutil::{f32_bytes, gguf_str, str_array, write_gguf};
use super::*;
use std::io::Write;

#[test]
fn reads_every_metadata_type_and_nested_arrays() {
    let mut nested = 9u32.to_le_bytes().to_vec(); // array of arrays of i32
    nested.extend_from_slice(&2u64.to_le_bytes());
    for row in [[1i32, -2], [3, 4]] {
        nested.extend_from_slice(&5u32.to_le_bytes());
        nested.extend_from_slice(&2u64.to_le_bytes());
        for x in row {
            nested.extend_from_slice(&x.to_le_bytes());
        }
    }
    let kv = vec![
        ("a.u8", 0, vec![200]),
        ("a.i8", 1, vec![0xff]),
        ("a.u16", 2, 60000u16.to_le_bytes().to_vec()),
        ("a.i16", 3, (-300i16).to_le_bytes().to_vec()),
        ("a.u32", 4, 7u32.to_le_bytes().to_vec()),
        ("a.i32", 5, (-7i32).to_le_bytes().to_vec()),
        ("a.f32", 6, 0.5f32.to_le_bytes().to_vec()),
        ("a.bool", 7, vec![1]),
        ("a.str", 8, gguf_str("héllo")),
        ("a.u64", 10, u64::MAX.to_le_bytes().to_vec()),
        ("a.i64", 11, (-9i64).to_le_bytes().to_vec()),
        ("a.f64", 12, 2.25f64.to_le_bytes().to_vec()),
        ("a.strs", 9, str_array(&["x", "yz"])),
        ("a.nested", 9, nested),
    ];
    let f = write_gguf(&kv, &[], 32);
    let g = GgufFile::open(f.path()).expect("open");
    assert_eq!(g.version(), 3);
    assert_eq!(g.get("a.u8"), Some(&GgufValue::U8(200)));
    assert_eq!(g.get("a.i8"), Some(&GgufValue::I8(-1)));
    assert_eq!(g.get_u64("a.u16"), Some(60000));
    assert_eq!(g.get("a.i16").and_then(|v| v.as_i64()), Some(-300));
    assert_eq!(g.get_u64("a.u32"), Some(7));
    assert_eq!(g.get_u64("a.i32"), None, "negative values are not u64");
    assert_eq!(g.get_f32("a.f32"), Some(0.5));
    assert_eq!(g.get_bool("a.bool"), Some(true));
    assert_eq!(g.get_str("a.str"), Some("héllo"));
    assert_eq!(g.get_u64("a.u64"), Some(u64::MAX));
    assert_eq!(g.get("a.i64").and_then(|v| v.as_i64()), Some(-9));
    assert_eq!(g.get_f32("a.f64"), Some(2.25));
    assert_eq!(g.get_str_array("a.strs"), Some(vec!["x", "yz"]));
    let nested = g
        .get("a.nested")
        .and_then(|v| v.as_array())
        .expect("nested");
    assert_eq!(nested[1].as_array().map(|r| r[0].as_i64()), Some(Some(3)));
    assert_eq!(g.metadata().len(), 14);
}

#[test]
fn tensors_have_row_major_shapes_and_aligned_data() {
    let weights: Vec<f32> = (0..6).map(|i| i as f32).collect();
    // Q8_0: one block of 32, scale 0.5, values -16..16.
    let mut q8 = half::f16::from_f32(0.5).to_le_bytes().to_vec();
    q8.extend((0..32).map(|i| (i as i8 - 16) as u8));
    let kv = vec![("general.alignment", 4, 64u32.to_le_bytes().to_vec())];
    let tensors = vec![
        ("w", vec![3, 2], 0, f32_bytes(&weights)),
        ("q", vec![32, 1], 8, q8),
    ];
    let f = write_gguf(&kv, &tensors, 64);
    let g = GgufFile::open(f.path()).expect("open");
    assert_eq!(g.data_offset() % 64, 0);
    let w = g.tensor_info("w").expect("w");
    assert_eq!(w.shape, vec![2, 3], "ggml dims [3, 2] are 2 rows of 3");
    assert_eq!(w.ggml_type, GgmlType::F32);
    let (shape, data) = g.tensor_f32("w").expect("w data");
    assert_eq!((shape, data), (vec![2, 3], weights));
    let (shape, data) = g.tensor_f32("q").expect("q data");
    assert_eq!(shape, vec![1, 32]);
    assert_eq!(data[0], -8.0);
    assert_eq!(data[31], 7.5);
    assert_eq!(g.tensor_info("q").map(|t| t.offset % 64), Some(0));
    assert!(matches!(
        g.tensor_f32("nope"),
        Err(GgufError::MissingTensor(_))
    ));
}

#[test]
fn truncated_or_foreign_files_are_errors() {
    let f = write_gguf(&[("k", 8, gguf_str("v"))], &[], 32);
    let bytes = std::fs::read(f.path()).expect("read");
    let mut short = tempfile::NamedTempFile::new().expect("tmp");
    short.write_all(&bytes[..30]).expect("write");
    assert!(matches!(
        GgufFile::open(short.path()),
        Err(GgufError::Malformed(_))
    ));
    let mut foreign = tempfile::NamedTempFile::new().expect("tmp");
    foreign
        .write_all(b"PK\x03\x04 not gguf at all")
        .expect("write");
    assert!(matches!(
        GgufFile::open(foreign.path()),
        Err(GgufError::BadMagic(_))
    ));
    // A tensor whose data would run past the end of the file.
    let g = write_gguf(&[], &[("w", vec![4], 0, f32_bytes(&[1.0; 4]))], 32);
    let bytes = std::fs::read(g.path()).expect("read");
    let mut cut = tempfile::NamedTempFile::new().expect("tmp");
    cut.write_all(&bytes[..bytes.len() - 4]).expect("write");
    assert!(matches!(
        GgufFile::open(cut.path()),
        Err(GgufError::Malformed(_))
    ));
}

#[test]
fn hf_config_from_llama_metadata() {
    let u32v = |v: u32| v.to_le_bytes().to_vec();
    let kv = vec![
        ("general.architecture", 8, gguf_str("llama")),
        ("llama.embedding_length", 4, u32v(64)),
        ("llama.feed_forward_length", 4, u32v(128)),
        ("llama.attention.head_count", 4, u32v(4)),
        ("llama.attention.head_count_kv", 4, u32v(2)),
        ("llama.block_count", 4, u32v(2)),
        ("llama.context_length", 4, u32v(8192)),
        ("llama.rope.freq_base", 6, 100000f32.to_le_bytes().to_vec()),
        (
            "llama.attention.layer_norm_rms_epsilon",
            6,
            1e-5f32.to_le_bytes().to_vec(),
        ),
        ("tokenizer.ggml.tokens", 9, str_array(&["a", "b", "c"])),
        ("tokenizer.ggml.bos_token_id", 4, u32v(1)),
        ("tokenizer.ggml.eos_token_id", 4, u32v(2)),
    ];
    let f = write_gguf(
        &kv,
        &[("token_embd.weight", vec![64, 3], 0, f32_bytes(&[0.0; 192]))],
        32,
    );
    let c = GgufFile::open(f.path())
        .expect("open")
        .hf_config()
        .expect("config");
    assert_eq!(c["model_type"], "llama");
    assert_eq!(c["architectures"][0], "LlamaForCausalLM");
    assert_eq!(c["hidden_size"], 64);
    assert_eq!(c["intermediate_size"], 128);
    assert_eq!(c["num_key_value_heads"], 2);
    assert_eq!(c["head_dim"], 16);
    assert_eq!(c["max_position_embeddings"], 8192);
    assert_eq!(c["vocab_size"], 3);
    assert_eq!(c["rope_theta"].as_f64(), Some(100000.0));
    assert!((c["rms_norm_eps"].as_f64().unwrap_or(0.0) - 1e-5).abs() < 1e-9);
    assert_eq!(c["tie_word_embeddings"], true, "no output.weight");
    assert_eq!(c["attention_bias"], false);
    assert_eq!(
        (c["bos_token_id"].clone(), c["eos_token_id"].clone()),
        (1.into(), 2.into())
    );
}

#[test]
fn tensor_names_map_to_hugging_face() {
    for (g, h) in [
        ("token_embd.weight", "model.embed_tokens.weight"),
        (
            "blk.12.attn_q.weight",
            "model.layers.12.self_attn.q_proj.weight",
        ),
        ("blk.0.attn_q.bias", "model.layers.0.self_attn.q_proj.bias"),
        (
            "blk.1.attn_output.weight",
            "model.layers.1.self_attn.o_proj.weight",
        ),
        (
            "blk.1.attn_k_norm.weight",
            "model.layers.1.self_attn.k_norm.weight",
        ),
        (
            "blk.2.ffn_down.weight",
            "model.layers.2.mlp.down_proj.weight",
        ),
        (
            "blk.2.attn_norm.weight",
            "model.layers.2.input_layernorm.weight",
        ),
        (
            "blk.2.ffn_norm.weight",
            "model.layers.2.post_attention_layernorm.weight",
        ),
        ("output_norm.weight", "model.norm.weight"),
        ("output.weight", "lm_head.weight"),
    ] {
        assert_eq!(hf_tensor_name(g).as_deref(), Some(h), "{g}");
    }
    assert_eq!(hf_tensor_name("rope_freqs.weight"), None);
    assert_eq!(hf_tensor_name("blk.x.attn_q.weight"), None);
}

#[test]
fn unpermute_restores_half_split_rows_of_two_heads() {
    // 2 heads of 4 rows, 1 column. HF rows per head: [a0 a1 | b0 b1] (halves);
    // llama.cpp stores them interleaved: [a0 b0 a1 b1].
    let mut gguf = vec![0., 10., 1., 11., 100., 110., 101., 111.];
    hf::undo_llama_qk_permutation(&mut gguf, 8, 1, 2);
    assert_eq!(gguf, vec![0., 1., 10., 11., 100., 101., 110., 111.]);
}

#[test]
fn hf_tensors_are_unpermuted_for_llama_only() {
    // Q: 2 heads × 4 rows, 1 column, stored in llama.cpp order; K: 1 KV head of 4 rows.
    let q_gguf = [0., 10., 1., 11., 100., 110., 101., 111.];
    let q_hf = vec![0., 1., 10., 11., 100., 101., 110., 111.];
    let k_gguf = [0., 10., 1., 11.];
    for (arch, permuted) in [("llama", true), ("qwen2", false)] {
        let u32v = |v: u32| v.to_le_bytes().to_vec();
        let heads_key = if arch == "llama" {
            "llama.attention.head_count"
        } else {
            "qwen2.attention.head_count"
        };
        let kv_key = if arch == "llama" {
            "llama.attention.head_count_kv"
        } else {
            "qwen2.attention.head_count_kv"
        };
        let kv = vec![
            ("general.architecture", 8, gguf_str(arch)),
            (heads_key, 4, u32v(2)),
            (kv_key, 4, u32v(1)),
        ];
        let tensors = vec![
            ("blk.0.attn_q.weight", vec![1, 8], 0, f32_bytes(&q_gguf)),
            ("blk.0.attn_k.weight", vec![1, 4], 0, f32_bytes(&k_gguf)),
            ("blk.0.attn_v.weight", vec![1, 4], 0, f32_bytes(&k_gguf)),
            ("rope_freqs.weight", vec![2], 0, f32_bytes(&[1.0, 1.0])),
        ];
        let f = write_gguf(&kv, &tensors, 32);
        let g = GgufFile::open(f.path()).expect("open");
        let hf::HfTensor {
            name,
            shape,
            data: q,
        } = g
            .hf_tensor_f32("blk.0.attn_q.weight")
            .expect("q")
            .expect("mapped");
        assert_eq!(
            (name.as_str(), shape),
            ("model.layers.0.self_attn.q_proj.weight", vec![8, 1])
        );
        assert_eq!(
            q,
            if permuted {
                q_hf.clone()
            } else {
                q_gguf.to_vec()
            },
            "{arch}"
        );
        let k = g
            .hf_tensor_f32("blk.0.attn_k.weight")
            .expect("k")
            .expect("mapped");
        let k_hf = if permuted {
            vec![0., 1., 10., 11.]
        } else {
            k_gguf.to_vec()
        };
        assert_eq!(k.data, k_hf, "{arch}: K uses the KV head count");
        let v = g
            .hf_tensor_f32("blk.0.attn_v.weight")
            .expect("v")
            .expect("mapped");
        assert_eq!(v.data, k_gguf.to_vec(), "V is never permuted");
        assert!(g.hf_tensor_f32("rope_freqs.weight").expect("ok").is_none());
    }
}

#[test]
fn permute_then_unpermute_is_identity() {
    let (rows, cols, heads) = (24, 5, 3);
    let orig: Vec<f32> = (0..rows * cols).map(|i| i as f32).collect();
    let mut d = orig.clone();
    hf::llama_qk_permutation(&mut d, rows, cols, heads);
    assert_ne!(d, orig);
    hf::undo_llama_qk_permutation(&mut d, rows, cols, heads);
    assert_eq!(d, orig);
}

/// Development check against real model files (not run by default): dequantizes every tensor
/// of the GGUF at `$GGUF_CHECK_FILE`, reports the time, and writes every 31st value of each
/// tensor to `$GGUF_CHECK_OUT` for comparison with `gguf.quants.dequantize` in Python.
#[test]
#[ignore]
fn dequantize_real_file() {
    let (Ok(path), Ok(out)) = (
        std::env::var("GGUF_CHECK_FILE"),
        std::env::var("GGUF_CHECK_OUT"),
    ) else {
        return;
    };
    let g = GgufFile::open(&path).expect("open");
    if let Ok(config) = g.hf_config() {
        eprintln!("config: {config}");
    }
    let start = std::time::Instant::now();
    let mut samples = Vec::new();
    let mut total = 0usize;
    let mut per_type: HashMap<String, (usize, f64)> = HashMap::new();
    for t in g.tensors() {
        let t0 = std::time::Instant::now();
        let (_, data) = g.tensor_f32(&t.name).expect("dequantize");
        let e = per_type.entry(t.ggml_type.name()).or_default();
        e.0 += data.len();
        e.1 += t0.elapsed().as_secs_f64();
        total += data.len();
        samples.extend(data.iter().step_by(31).flat_map(|v| v.to_le_bytes()));
    }
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "{path}: {total} values in {secs:.2}s ({:.0} M values/s)",
        total as f64 / secs / 1e6
    );
    for (ty, (n, s)) in per_type {
        eprintln!("  {ty}: {n} values, {:.0} M values/s", n as f64 / s / 1e6);
    }
    std::fs::write(out, samples).expect("write samples");
}
