//! Gemma 3's sliding window against the f64 reference where it bites: prompt chunks longer than
//! the window, chunks that start past it, decoding far beyond it, prefix reuse, and decode
//! batches whose sequences all sit past their windows (so the slots' keys are cut at the front).

use super::batch::row_of;
use super::*;

fn random_tokens(n: usize, seed: u64) -> Vec<u32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| rng.random_range(0..VOCAB as u32)).collect()
}

#[test]
fn gemma3_window_holds_in_long_chunks_decode_and_prefix_reuse() {
    let cfg = config("gemma3_text");
    let tensors = random_tensors(&cfg, 21);
    let tokens = random_tokens(14, 4);
    let reference = reference_logits(&cfg, &tensors, &tokens);
    for stock in ["", "attention", "host", "exp", "all"] {
        let ops = Ops::default().without(stock).unwrap();
        let model = Model::with_ops(cfg.clone(), to_mlx(&tensors), ops).unwrap();
        let mut cache = KvCache::new(LAYERS);
        let mut at = 0;
        // 5 and 6 are longer than the window (3); the second starts past it.
        for chunk in [5, 6, 1, 1, 1] {
            let logits = model
                .forward_last(&tokens[at..at + chunk], &mut cache)
                .unwrap();
            at += chunk;
            assert_close(
                &logits,
                &reference[at - 1],
                &format!("without {stock:?}: positions up to {at}"),
            );
        }
        cache.truncate(7);
        let logits = model.forward_last(&tokens[7..12], &mut cache).unwrap();
        assert_close(
            &logits,
            &reference[11],
            &format!("without {stock:?}: reused prefix of 7"),
        );
    }
}

#[test]
fn gemma3_decode_batch_past_every_window_matches_reference() {
    let cfg = config("gemma3_text");
    let tensors = random_tensors(&cfg, 8);
    let model = Model::new(cfg.clone(), to_mlx(&tensors)).unwrap();
    let mut seqs = [random_tokens(9, 1), random_tokens(7, 2)];
    let mut slots = SlotKv::new(
        LAYERS,
        cfg.kv_heads(),
        cfg.head_dim(),
        mlx_rs::Dtype::Float32,
    );
    for (i, s) in seqs.iter().enumerate() {
        let mut c = KvCache::new(LAYERS);
        model.forward_last(s, &mut c).unwrap();
        slots.insert(i as u64, &c).unwrap();
    }
    for step in 0..4u32 {
        let next: Vec<u32> = (0..2).map(|i| (step * 5 + i * 11) % VOCAB as u32).collect();
        let logits = model.forward_batch(&next, &mut slots).unwrap();
        for (i, s) in seqs.iter_mut().enumerate() {
            s.push(next[i]);
            let reference = reference_logits(&cfg, &tensors, s);
            assert_close(
                &row_of(&logits, i),
                &reference[s.len() - 1],
                &format!("step {step} seq {i}"),
            );
        }
    }
}
