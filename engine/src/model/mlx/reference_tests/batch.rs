//! The decode batch (slot KV) against the f64 reference decoder, per sequence.

use super::*;

/// Row `i` of batch logits `[batch, vocab]`, contiguous.
pub(super) fn row_of(logits: &Array, i: usize) -> Array {
    let i = i as i32;
    super::super::ffi::slice(logits, &[i, 0], &[i + 1, VOCAB as i32])
        .unwrap()
        .contiguous()
        .unwrap()
}

/// A decode batch of sequences at different positions gives each the logits it would get alone.
#[test]
fn decode_batch_matches_f64_reference_per_sequence() {
    for family in ["llama", "qwen2", "qwen3", "gemma3_text"] {
        let cfg = config(family);
        let tensors = random_tensors(&cfg, 11);
        let model = Model::new(cfg.clone(), to_mlx(&tensors)).unwrap();
        let seqs: [Vec<u32>; 3] = [vec![3, 17, 5, 39, 0, 22], vec![8, 11], vec![1, 2, 3, 4]];
        let mut slots = SlotKv::new(
            LAYERS,
            cfg.kv_heads(),
            cfg.head_dim(),
            mlx_rs::Dtype::Float32,
        );
        for (i, s) in seqs.iter().enumerate() {
            let mut c = KvCache::new(LAYERS);
            model.forward_last(&s[..s.len() - 1], &mut c).unwrap();
            slots.insert(i as u64, &c).unwrap();
        }
        let next: Vec<u32> = seqs.iter().map(|s| *s.last().unwrap()).collect();
        let logits = model.forward_batch(&next, &mut slots).unwrap();
        assert_eq!(logits.shape(), &[3, VOCAB as i32]);
        for (i, s) in seqs.iter().enumerate() {
            let reference = reference_logits(&cfg, &tensors, s);
            let row = row_of(&logits, i);
            assert_close(
                &row,
                &reference[s.len() - 1],
                &format!("{family} batch row {i}"),
            );
            assert_eq!(slots.length(i), s.len());
        }
    }
}

/// Sequences leaving and joining the decode slots between steps (the last slot moving into a
/// freed one, a newcomer taking the next) keep every sequence's logits those of the reference.
#[test]
fn decode_slots_stay_exact_as_sequences_leave_and_join() {
    let cfg = config("qwen2");
    let tensors = random_tensors(&cfg, 5);
    let model = Model::new(cfg.clone(), to_mlx(&tensors)).unwrap();
    let mut seqs: Vec<Vec<u32>> = vec![vec![3, 17, 5, 39], vec![8, 11], vec![1, 2, 3, 4, 5, 6, 7]];
    let mut slots = SlotKv::new(
        LAYERS,
        cfg.kv_heads(),
        cfg.head_dim(),
        mlx_rs::Dtype::Float32,
    );
    let prefill = |s: &[u32], slots: &mut SlotKv, id: u64| {
        let mut c = KvCache::new(LAYERS);
        model.forward_last(s, &mut c).unwrap();
        slots.insert(id, &c).unwrap();
    };
    for (i, s) in seqs.iter().enumerate() {
        prefill(s, &mut slots, i as u64);
    }
    let mut ids: Vec<u64> = vec![0, 1, 2];
    for round in 0..4u32 {
        if round == 1 {
            // The first sequence ends: the last slot moves into slot 0.
            let cache = slots.remove(0).unwrap().unwrap();
            assert_eq!(cache.offset(), seqs[0].len());
            ids.retain(|&id| id != 0);
        }
        if round == 2 {
            seqs.push(vec![9, 9, 2]);
            prefill(&seqs[3], &mut slots, 3);
            ids.push(3);
        }
        let order: Vec<u64> = slots.owners().to_vec();
        let next: Vec<u32> = order
            .iter()
            .map(|&id| (round * 7 + id as u32 * 3) % VOCAB as u32)
            .collect();
        let logits = model.forward_batch(&next, &mut slots).unwrap();
        for (slot, &id) in order.iter().enumerate() {
            let s = &mut seqs[id as usize];
            s.push(next[slot]);
            let reference = reference_logits(&cfg, &tensors, s);
            let row = row_of(&logits, slot);
            assert_close(
                &row,
                &reference[s.len() - 1],
                &format!("round {round} seq {id}"),
            );
            assert_eq!(slots.length(slot), s.len());
        }
        let mut sorted = order.clone();
        sorted.sort_unstable();
        let mut want = ids.clone();
        want.sort_unstable();
        assert_eq!(sorted, want);
    }
}
