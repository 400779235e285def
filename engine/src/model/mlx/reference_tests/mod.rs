//! The MLX decoder against an independent plain-Rust f64 forward pass on tiny random weights.
// Index loops keep the reference readable as the textbook formulas.
#![allow(clippy::needless_range_loop)]

use std::collections::HashMap;

use mlx_rs::Array;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::config::ModelConfig;
use super::decoder::Model;
use super::kv_cache::KvCache;
use super::ops::Ops;
use super::slot_kv::SlotKv;

const HIDDEN: usize = 16;
const HEADS: usize = 4;
const KV_HEADS: usize = 2;
const HEAD_DIM: usize = 4;
const INTER: usize = 24;
const VOCAB: usize = 40;
const LAYERS: usize = 2;

type Tensors = HashMap<String, (Vec<usize>, Vec<f32>)>;

fn config(model_type: &str) -> ModelConfig {
    let mut c = serde_json::json!({
        "model_type": model_type,
        "hidden_size": HIDDEN,
        "intermediate_size": INTER,
        "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS,
        "num_key_value_heads": KV_HEADS,
        "head_dim": HEAD_DIM,
        "vocab_size": VOCAB,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "tie_word_embeddings": model_type != "qwen3",
    });
    if model_type == "gemma3_text" {
        // A window shorter than the test sequences, a query scale and a local RoPE base that
        // differ from the defaults they could be confused with.
        c["layer_types"] = serde_json::json!(["sliding_attention", "full_attention"]);
        c["sliding_window"] = serde_json::json!(GEMMA_WINDOW);
        c["query_pre_attn_scalar"] = serde_json::json!(9.0);
        c["rope_local_base_freq"] = serde_json::json!(100.0);
    }
    serde_json::from_value(c).unwrap()
}

/// The sliding window of the tiny Gemma 3 model.
const GEMMA_WINDOW: usize = 3;

/// RMSNorm weights of a Gemma checkpoint are offsets from 1 (the model multiplies by `1 + w`).
fn norm_offset(cfg: &ModelConfig) -> f32 {
    if cfg.is_gemma3() {
        0.0
    } else {
        1.0
    }
}

fn random_tensors(cfg: &ModelConfig, seed: u64) -> Tensors {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut t = Tensors::new();
    let mut put =
        |name: String, shape: Vec<usize>, scale: f32, offset: f32, rng: &mut ChaCha8Rng| {
            let n = shape.iter().product();
            let data = (0..n)
                .map(|_| offset + scale * rng.random_range(-1.0f32..1.0))
                .collect();
            t.insert(name, (shape, data));
        };
    put(
        "model.embed_tokens.weight".into(),
        vec![VOCAB, HIDDEN],
        1.0,
        0.0,
        &mut rng,
    );
    let one = norm_offset(cfg);
    put("model.norm.weight".into(), vec![HIDDEN], 0.2, one, &mut rng);
    if !cfg.tie_word_embeddings {
        put(
            "lm_head.weight".into(),
            vec![VOCAB, HIDDEN],
            0.5,
            0.0,
            &mut rng,
        );
    }
    for l in 0..LAYERS {
        let p = format!("model.layers.{l}");
        let proj = [
            ("self_attn.q_proj", HEADS * HEAD_DIM, HIDDEN),
            ("self_attn.k_proj", KV_HEADS * HEAD_DIM, HIDDEN),
            ("self_attn.v_proj", KV_HEADS * HEAD_DIM, HIDDEN),
            ("self_attn.o_proj", HIDDEN, HEADS * HEAD_DIM),
            ("mlp.gate_proj", INTER, HIDDEN),
            ("mlp.up_proj", INTER, HIDDEN),
            ("mlp.down_proj", HIDDEN, INTER),
        ];
        for (name, out, inp) in proj {
            put(
                format!("{p}.{name}.weight"),
                vec![out, inp],
                0.4,
                0.0,
                &mut rng,
            );
        }
        if cfg.qkv_bias() {
            for (name, out) in [
                ("q_proj", HEADS * HEAD_DIM),
                ("k_proj", KV_HEADS * HEAD_DIM),
                ("v_proj", KV_HEADS * HEAD_DIM),
            ] {
                put(
                    format!("{p}.self_attn.{name}.bias"),
                    vec![out],
                    0.3,
                    0.0,
                    &mut rng,
                );
            }
        }
        if cfg.qk_norm() {
            for n in ["q_norm", "k_norm"] {
                let name = format!("{p}.self_attn.{n}.weight");
                put(name, vec![HEAD_DIM], 0.2, one, &mut rng);
            }
        }
        let mut norms = vec!["input_layernorm", "post_attention_layernorm"];
        if cfg.is_gemma3() {
            norms.extend(["pre_feedforward_layernorm", "post_feedforward_layernorm"]);
        }
        for n in norms {
            put(format!("{p}.{n}.weight"), vec![HIDDEN], 0.2, one, &mut rng);
        }
    }
    t
}

fn to_mlx(t: &Tensors) -> HashMap<String, Array> {
    t.iter()
        .map(|(k, (shape, data))| {
            let shape: Vec<i32> = shape.iter().map(|&d| d as i32).collect();
            (k.clone(), Array::from_slice(data, &shape))
        })
        .collect()
}

// ---- the reference: plain f64, whole sequence at once, no cache ----

fn w<'a>(t: &'a Tensors, name: &str) -> &'a [f32] {
    &t[name].1
}

fn linear(x: &[f64], weight: &[f32], bias: Option<&[f32]>, out: usize) -> Vec<f64> {
    let inp = x.len();
    (0..out)
        .map(|o| {
            let dot: f64 = (0..inp).map(|i| x[i] * weight[o * inp + i] as f64).sum();
            dot + bias.map_or(0.0, |b| b[o] as f64)
        })
        .collect()
}

/// RMSNorm multiplying by `shift + weight` (Gemma: shift 1).
fn rms_shifted(x: &[f64], weight: &[f32], eps: f64, shift: f64) -> Vec<f64> {
    let ms = x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64;
    let inv = 1.0 / (ms + eps).sqrt();
    x.iter()
        .zip(weight)
        .map(|(v, g)| v * inv * (shift + *g as f64))
        .collect()
}

/// `gelu_pytorch_tanh`, in its textbook form.
fn gelu_tanh(x: f64) -> f64 {
    let c = (2.0 / std::f64::consts::PI).sqrt();
    0.5 * x * (1.0 + (c * (x + 0.044715 * x * x * x)).tanh())
}

/// Hugging Face's rotate-half RoPE on one head vector at `pos`.
fn rope(x: &mut [f64], pos: usize, base: f64) {
    let half = x.len() / 2;
    for i in 0..half {
        let inv_freq = base.powf(-(2.0 * i as f64) / x.len() as f64);
        let (s, c) = (pos as f64 * inv_freq).sin_cos();
        let (a, b) = (x[i], x[i + half]);
        x[i] = a * c - b * s;
        x[i + half] = b * c + a * s;
    }
}

/// Gemma 3's switches, read from the config by hand (not through the decoder's helpers).
struct Gemma {
    window: Option<usize>,
    local_base: f64,
    scale: f64,
}

fn gemma_of(cfg: &ModelConfig) -> Option<Gemma> {
    (cfg.model_type == "gemma3_text").then(|| Gemma {
        window: cfg.sliding_window,
        local_base: cfg.rope_local_base_freq.unwrap_or(10_000.0),
        scale: cfg
            .query_pre_attn_scalar
            .unwrap_or(HEAD_DIM as f64)
            .powf(-0.5),
    })
}

fn reference_logits(cfg: &ModelConfig, t: &Tensors, tokens: &[u32]) -> Vec<Vec<f64>> {
    let gemma = gemma_of(cfg);
    let shift = if gemma.is_some() { 1.0 } else { 0.0 };
    let eps = cfg.rms_norm_eps;
    let rms = |x: &[f64], weight: &[f32], eps: f64| rms_shifted(x, weight, eps, shift);
    let n = tokens.len();
    let emb = w(t, "model.embed_tokens.weight");
    let embed_scale = if gemma.is_some() {
        (HIDDEN as f64).sqrt()
    } else {
        1.0
    };
    let mut h: Vec<Vec<f64>> = tokens
        .iter()
        .map(|&tok| {
            emb[tok as usize * HIDDEN..(tok as usize + 1) * HIDDEN]
                .iter()
                .map(|&v| v as f64 * embed_scale)
                .collect()
        })
        .collect();
    for l in 0..LAYERS {
        let p = format!("model.layers.{l}");
        let sliding = cfg
            .layer_types
            .as_ref()
            .is_some_and(|t| t[l] == "sliding_attention");
        let base = match &gemma {
            Some(g) if sliding => g.local_base,
            _ => cfg.rope_theta,
        };
        // Keys a query at `pos` sees: all before it, or the last `window` with itself.
        let first_key = |pos: usize| match gemma.as_ref().and_then(|g| g.window) {
            Some(w) if sliding => (pos + 1).saturating_sub(w),
            _ => 0,
        };
        let bias = |name: &str| {
            t.get(&format!("{p}.self_attn.{name}.bias"))
                .map(|b| b.1.as_slice())
        };
        let mut qs = Vec::new();
        let mut ks = Vec::new();
        let mut vs = Vec::new();
        for (pos, x) in h.iter().enumerate() {
            let xn = rms(x, w(t, &format!("{p}.input_layernorm.weight")), eps);
            let q = linear(
                &xn,
                w(t, &format!("{p}.self_attn.q_proj.weight")),
                bias("q_proj"),
                HEADS * HEAD_DIM,
            );
            let k = linear(
                &xn,
                w(t, &format!("{p}.self_attn.k_proj.weight")),
                bias("k_proj"),
                KV_HEADS * HEAD_DIM,
            );
            let v = linear(
                &xn,
                w(t, &format!("{p}.self_attn.v_proj.weight")),
                bias("v_proj"),
                KV_HEADS * HEAD_DIM,
            );
            let mut q: Vec<Vec<f64>> = q.chunks(HEAD_DIM).map(|c| c.to_vec()).collect();
            let mut k: Vec<Vec<f64>> = k.chunks(HEAD_DIM).map(|c| c.to_vec()).collect();
            if cfg.qk_norm() {
                q = q
                    .iter()
                    .map(|hv| rms(hv, w(t, &format!("{p}.self_attn.q_norm.weight")), eps))
                    .collect();
                k = k
                    .iter()
                    .map(|hv| rms(hv, w(t, &format!("{p}.self_attn.k_norm.weight")), eps))
                    .collect();
            }
            q.iter_mut().for_each(|hv| rope(hv, pos, base));
            k.iter_mut().for_each(|hv| rope(hv, pos, base));
            qs.push(q);
            ks.push(k);
            vs.push(v.chunks(HEAD_DIM).map(|c| c.to_vec()).collect::<Vec<_>>());
        }
        let group = HEADS / KV_HEADS;
        let scale = gemma
            .as_ref()
            .map_or(1.0 / (HEAD_DIM as f64).sqrt(), |g| g.scale);
        for pos in 0..n {
            let mut attn = Vec::with_capacity(HEADS * HEAD_DIM);
            let keys = first_key(pos)..=pos;
            for head in 0..HEADS {
                let kvh = head / group;
                let scores: Vec<f64> = keys
                    .clone()
                    .map(|j| {
                        qs[pos][head]
                            .iter()
                            .zip(&ks[j][kvh])
                            .map(|(a, b)| a * b)
                            .sum::<f64>()
                            * scale
                    })
                    .collect();
                let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let exps: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                let sum: f64 = exps.iter().sum();
                for d in 0..HEAD_DIM {
                    let first = *keys.start();
                    attn.push(
                        keys.clone()
                            .map(|j| exps[j - first] / sum * vs[j][kvh][d])
                            .sum(),
                    );
                }
            }
            let o = linear(
                &attn,
                w(t, &format!("{p}.self_attn.o_proj.weight")),
                None,
                HIDDEN,
            );
            let norm = |x: &[f64], name: &str| rms(x, w(t, &format!("{p}.{name}.weight")), eps);
            // Gemma norms each sublayer's output too, and its MLP input with a norm of its own.
            let (x, xn) = if gemma.is_some() {
                let o = norm(&o, "post_attention_layernorm");
                let x: Vec<f64> = h[pos].iter().zip(&o).map(|(a, b)| a + b).collect();
                let xn = norm(&x, "pre_feedforward_layernorm");
                (x, xn)
            } else {
                let x: Vec<f64> = h[pos].iter().zip(&o).map(|(a, b)| a + b).collect();
                let xn = norm(&x, "post_attention_layernorm");
                (x, xn)
            };
            let g = linear(&xn, w(t, &format!("{p}.mlp.gate_proj.weight")), None, INTER);
            let u = linear(&xn, w(t, &format!("{p}.mlp.up_proj.weight")), None, INTER);
            let act: Vec<f64> = g
                .iter()
                .zip(&u)
                .map(|(&g, u)| match gemma {
                    Some(_) => gelu_tanh(g) * u,
                    None => g / (1.0 + (-g).exp()) * u,
                })
                .collect();
            let mut d = linear(
                &act,
                w(t, &format!("{p}.mlp.down_proj.weight")),
                None,
                HIDDEN,
            );
            if gemma.is_some() {
                d = norm(&d, "post_feedforward_layernorm");
            }
            h[pos] = x.iter().zip(&d).map(|(a, b)| a + b).collect();
        }
    }
    let head = if cfg.tie_word_embeddings {
        "model.embed_tokens.weight"
    } else {
        "lm_head.weight"
    };
    h.iter()
        .map(|x| {
            linear(
                &rms(x, w(t, "model.norm.weight"), eps),
                w(t, head),
                None,
                VOCAB,
            )
        })
        .collect()
}

fn assert_close(got: &Array, want: &[f64], what: &str) {
    got.eval().unwrap();
    let got = got.as_slice::<f32>();
    assert_eq!(got.len(), want.len(), "{what}: length");
    let worst = got
        .iter()
        .zip(want)
        .map(|(g, w)| (*g as f64 - w).abs())
        .fold(0.0, f64::max);
    assert!(worst < 2e-4, "{what}: max abs error {worst}");
}

/// Prefill in uneven chunks then decode token by token, comparing every step's last logits, with
/// our replacement operations (fused projections, grouped attention, host kernels) and with
/// MLX's stock ones, each switched off alone and all together.
fn check_family(model_type: &str) {
    let cfg = config(model_type);
    let tensors = random_tensors(&cfg, 7);
    let tokens: Vec<u32> = vec![3, 17, 5, 39, 0, 22, 8, 11];
    let reference = reference_logits(&cfg, &tensors, &tokens);
    for stock in ["", "fuse", "attention", "exp", "host", "all"] {
        let ops = Ops::default().without(stock).unwrap();
        let model = Model::with_ops(cfg.clone(), to_mlx(&tensors), ops).unwrap();
        check_steps(
            &model,
            &tokens,
            &reference,
            &format!("{model_type} without {stock:?}"),
        );
    }
}

fn check_steps(model: &Model, tokens: &[u32], reference: &[Vec<f64>], model_type: &str) {
    let mut cache = KvCache::new(LAYERS);
    let logits = model.forward_last(&tokens[..3], &mut cache).unwrap();
    assert_close(&logits, &reference[2], &format!("{model_type} prefill"));
    let logits = model.forward_last(&tokens[3..5], &mut cache).unwrap();
    assert_close(
        &logits,
        &reference[4],
        &format!("{model_type} chunk after cache"),
    );
    for pos in 5..tokens.len() {
        let logits = model
            .forward_last(&tokens[pos..pos + 1], &mut cache)
            .unwrap();
        assert_close(
            &logits,
            &reference[pos],
            &format!("{model_type} decode {pos}"),
        );
    }

    // Reusing a truncated cache (prefix reuse) must give the same logits as a fresh prefill.
    cache.truncate(4);
    let logits = model.forward_last(&tokens[4..6], &mut cache).unwrap();
    assert_close(
        &logits,
        &reference[5],
        &format!("{model_type} after truncate"),
    );
}

#[test]
fn llama_decoder_matches_f64_reference() {
    check_family("llama");
}

#[test]
fn qwen2_decoder_with_qkv_bias_matches_f64_reference() {
    check_family("qwen2");
}

#[test]
fn qwen3_decoder_with_qk_norm_and_lm_head_matches_f64_reference() {
    check_family("qwen3");
}

#[test]
fn gemma3_decoder_with_sliding_window_matches_f64_reference() {
    check_family("gemma3_text");
}

#[test]
fn kv_cache_grows_past_one_block() {
    let cfg = config("llama");
    let tensors = random_tensors(&cfg, 3);
    let model = Model::new(cfg.clone(), to_mlx(&tensors)).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let tokens: Vec<u32> = (0..300)
        .map(|_| rng.random_range(0..VOCAB as u32))
        .collect();
    let mut cache = KvCache::new(LAYERS);
    model.forward_last(&tokens[..250], &mut cache).unwrap();
    let logits = model.forward_last(&tokens[250..300], &mut cache).unwrap();
    let reference = reference_logits(&cfg, &tensors, &tokens);
    assert_close(&logits, &reference[299], "across a buffer growth");
    assert_eq!(cache.offset(), 300);
}

/// Decode speed on SmolLM2-135M's shape with random weights (a probe, not a test):
/// `cargo test -p mlx-serve-actors --release --lib smollm_shape_decode_speed -- --ignored --nocapture`
#[test]
#[ignore]
fn smollm_shape_decode_speed() {
    let cfg: ModelConfig = serde_json::from_value(serde_json::json!({
        "model_type": "llama", "hidden_size": 576, "intermediate_size": 1536,
        "num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3,
        "vocab_size": 49152, "rms_norm_eps": 1e-5, "rope_theta": 100000.0,
        "tie_word_embeddings": true
    }))
    .unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let mut w = HashMap::new();
    let mut put = |name: String, shape: &[i32]| {
        let n: i32 = shape.iter().product();
        let data: Vec<f32> = (0..n).map(|_| rng.random_range(-0.05f32..0.05)).collect();
        w.insert(name, Array::from_slice(&data, shape));
    };
    put("model.embed_tokens.weight".into(), &[49152, 576]);
    put("model.norm.weight".into(), &[576]);
    for l in 0..30 {
        let p = format!("model.layers.{l}");
        for (n, s) in [
            ("self_attn.q_proj.weight", [576, 576]),
            ("self_attn.k_proj.weight", [192, 576]),
            ("self_attn.v_proj.weight", [192, 576]),
            ("self_attn.o_proj.weight", [576, 576]),
            ("mlp.gate_proj.weight", [1536, 576]),
            ("mlp.up_proj.weight", [1536, 576]),
            ("mlp.down_proj.weight", [576, 1536]),
        ] {
            put(format!("{p}.{n}"), &s);
        }
        put(format!("{p}.input_layernorm.weight"), &[576]);
        put(format!("{p}.post_attention_layernorm.weight"), &[576]);
    }
    let model = Model::new(cfg, w).unwrap();
    let mut cache = KvCache::new(30);
    let prompt: Vec<u32> = (0..50).collect();
    let t = std::time::Instant::now();
    model
        .forward_last(&prompt, &mut cache)
        .unwrap()
        .eval()
        .unwrap();
    eprintln!("prefill 50 tokens: {:?}", t.elapsed());
    let t = std::time::Instant::now();
    let n = 64;
    for i in 0..n {
        let l = model.forward_last(&[i], &mut cache).unwrap();
        l.eval().unwrap();
        let _ = l.as_slice::<f32>()[0];
    }
    let per = t.elapsed() / n;
    eprintln!(
        "decode: {per:?}/token = {:.1} tok/s",
        1.0 / per.as_secs_f64()
    );
    let w = Array::from_slice(&vec![0.01f32; 3072 * 576], &[3072, 576]);
    for rows in [1, 2, 4, 16] {
        let x = Array::from_slice(&vec![0.5f32; rows * 576], &[rows as i32, 576]);
        let t = std::time::Instant::now();
        for _ in 0..100 {
            x.matmul(w.t()).unwrap().eval().unwrap();
        }
        eprintln!("matmul [{rows},576]x[576,3072]: {:?}", t.elapsed() / 100);
    }
    for batch in [2usize, 4, 8, 16] {
        let mut slots = SlotKv::new(30, 3, 64, mlx_rs::Dtype::Float32);
        for b in 0..batch {
            slots.insert(b as u64, &cache).unwrap();
        }
        let tokens: Vec<u32> = (0..batch as u32).collect();
        let steps = 16;
        let t = std::time::Instant::now();
        for _ in 0..steps {
            model
                .forward_batch(&tokens, &mut slots)
                .unwrap()
                .eval()
                .unwrap();
        }
        let per = t.elapsed() / steps;
        let profile = std::cell::RefCell::new(super::profile::Profile::default());
        profile.borrow_mut().restart();
        model
            .forward_batch_profiled(&tokens, &mut slots, Some(&profile))
            .unwrap()
            .eval()
            .unwrap();
        for (group, d, n) in profile.borrow().groups() {
            eprintln!("    {group}: {d:?} ({n} marks)");
        }
        eprintln!(
            "batch {batch}: {per:?}/step = {:.1} tok/s",
            batch as f64 / per.as_secs_f64()
        );
    }
}

mod batch;
mod gemma3;
