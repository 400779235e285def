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
            let cache = slots.remove(0, KvCache::new(LAYERS)).unwrap();
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

/// A sequence leaving its slot onto the cache its prompt pass left (only the positions decoded
/// since are written) holds exactly what a copy of the whole slot holds, and later steps from
/// it match the reference.
#[test]
fn leaving_a_slot_onto_the_prompt_cache_equals_a_full_copy() {
    let cfg = config("llama");
    let tensors = random_tensors(&cfg, 9);
    let model = Model::new(cfg.clone(), to_mlx(&tensors)).unwrap();
    // Long enough that the prompt cache's 256-position block is mostly used (else a copy wins).
    let mut seq: Vec<u32> = (0..210).map(|i| (i * 7 + 3) % VOCAB as u32).collect();
    let mut slots = SlotKv::new(
        LAYERS,
        cfg.kv_heads(),
        cfg.head_dim(),
        mlx_rs::Dtype::Float32,
    );
    let mut prompt = KvCache::new(LAYERS);
    model.forward_last(&seq[..209], &mut prompt).unwrap();
    for id in [0, 1] {
        slots.insert(id, &prompt).unwrap();
    }
    for step in 0..3u32 {
        let token = [seq[seq.len() - 1], seq[seq.len() - 1]];
        let logits = model.forward_batch(&token, &mut slots).unwrap();
        logits.eval().unwrap();
        seq.push(step + 20);
    }
    let copied = slots.remove(1, KvCache::new(LAYERS)).unwrap();
    let onto = slots.remove(0, prompt).unwrap();
    assert!(slots.is_empty());
    assert_eq!(
        (copied.offset(), onto.offset()),
        (seq.len() - 1, seq.len() - 1)
    );
    // The copy is exact; the other is the prompt's buffer, written onto.
    assert_eq!((copied.capacity(), onto.capacity()), (seq.len() - 1, 256));
    for l in 0..LAYERS {
        let (a, b) = (copied.layer(l).unwrap(), onto.layer(l).unwrap());
        assert_eq!(
            a.0.contiguous().unwrap().as_slice::<f32>(),
            b.0.contiguous().unwrap().as_slice::<f32>()
        );
        assert_eq!(
            a.1.contiguous().unwrap().as_slice::<f32>(),
            b.1.contiguous().unwrap().as_slice::<f32>()
        );
    }
    // Decoding on from the cache gives the reference's next logits.
    let mut cache = onto;
    let logits = model
        .forward_last(&seq[seq.len() - 1..], &mut cache)
        .unwrap();
    let reference = reference_logits(&cfg, &tensors, &seq);
    assert_close(
        &logits,
        &reference[seq.len() - 1],
        "after leaving onto the prompt cache",
    );
}
