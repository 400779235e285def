//! Picking the next token from a row of logits on the host, and reporting logprobs.
//!
//! The engine copies the last position's logits to a `&mut [f32]` and calls [`Sampler::sample`]
//! once per decoded token. Processing follows Hugging Face `generate` (and vLLM, which applies
//! the same steps):
//!
//! 1. penalties, written back into the row: repetition (HF: over prompt and output tokens,
//!    positive logits divided, others multiplied), then frequency and presence (OpenAI: output
//!    tokens only, `logit -= count·frequency + presence`);
//! 2. temperature 0 (or `top_k == 1`): greedy argmax, lowest id on ties, no RNG touched;
//! 3. otherwise softmax at the temperature, then `top_k`, then `top_p` over what `top_k` kept
//!    (smallest most-likely prefix whose mass reaches `top_p`), then `min_p` (drop tokens below
//!    `min_p` × the top probability), then one draw from what is left.
//!
//! Speed: no step sorts the vocabulary in the common case. Filters only keep high-probability
//! tokens, so candidates are gathered with a linear threshold scan (relative weight ≥ 1e-3, then
//! 1e-6, 1e-9, then everything) until the set provably contains all survivors; only that set is
//! sorted. A flat distribution at a high temperature falls back to sorting the whole row.

mod math;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::engine::SamplingParams;

/// Tokens seen so far, as distinct tokens and counts: penalties then cost O(distinct tokens)
/// per step instead of O(history).
#[derive(Debug, Default, Clone)]
struct TokenHistory {
    /// Distinct tokens of prompt and output, for the repetition penalty.
    seen: HashSet<u32>,
    /// Occurrences of each token in the output, for frequency and presence penalties.
    output: HashMap<u32, u32>,
}

/// Samples the tokens of one sequence; holds its RNG and token history.
#[derive(Debug, Clone)]
pub struct Sampler {
    params: SamplingParams,
    rng: ChaCha8Rng,
    history: TokenHistory,
    /// Scratch row of relative probabilities, reused between steps.
    weights: Vec<f32>,
    /// Scratch candidate list `(weight, token)`, reused between steps.
    candidates: Vec<(f32, u32)>,
}

/// Candidate thresholds on the relative weight `p / p_max`, tried in order.
const LADDER: [f32; 3] = [1e-3, 1e-6, 1e-9];

impl Sampler {
    /// A sampler for one sequence. The same `seed` gives the same tokens for the same logits;
    /// without one the RNG is seeded from the OS.
    pub fn new(params: &SamplingParams) -> Self {
        let rng = match params.seed {
            Some(seed) => ChaCha8Rng::seed_from_u64(seed),
            None => ChaCha8Rng::from_rng(&mut rand::rng()),
        };
        Self {
            params: params.clone(),
            rng,
            history: TokenHistory::default(),
            weights: Vec::new(),
            candidates: Vec::new(),
        }
    }

    /// The settings this sampler applies.
    pub fn params(&self) -> &SamplingParams {
        &self.params
    }

    /// True when tokens are chosen by argmax (no randomness).
    pub fn is_greedy(&self) -> bool {
        self.params.temperature.is_nan() || self.params.temperature <= 0.0 || self.params.top_k == 1
    }

    /// Records the prompt, which the repetition penalty covers. Call once before sampling
    /// (again for prompt tokens added later).
    pub fn add_prompt(&mut self, tokens: &[u32]) {
        if self.repetition_on() {
            self.history.seen.extend(tokens.iter().copied());
        }
    }

    /// Records a token as generated without sampling it (e.g. a forced token), so penalties
    /// see it. [`Sampler::sample`] records its own picks.
    pub fn add_output(&mut self, token: u32) {
        if self.repetition_on() {
            self.history.seen.insert(token);
        }
        if self.output_penalties_on() {
            *self.history.output.entry(token).or_insert(0) += 1;
        }
    }

    /// Chooses the next token and records it in the history.
    ///
    /// On return `logits` holds the penalized logits (before temperature and filters), so
    /// [`logprobs`] on it reports the distribution the sampler drew from before truncation;
    /// copy the row first to report the raw model distribution instead. The two are equal when
    /// no penalty is set.
    pub fn sample(&mut self, logits: &mut [f32]) -> u32 {
        self.apply_penalties(logits);
        let token = self.pick(logits);
        self.add_output(token);
        token
    }

    fn repetition_on(&self) -> bool {
        let rp = self.params.repetition_penalty;
        rp > 0.0 && rp != 1.0
    }

    fn output_penalties_on(&self) -> bool {
        self.params.frequency_penalty != 0.0 || self.params.presence_penalty != 0.0
    }

    fn apply_penalties(&self, logits: &mut [f32]) {
        if self.repetition_on() {
            let rp = self.params.repetition_penalty;
            for &t in &self.history.seen {
                if let Some(l) = logits.get_mut(t as usize) {
                    *l = if *l > 0.0 { *l / rp } else { *l * rp };
                }
            }
        }
        if self.output_penalties_on() {
            let (freq, pres) = (self.params.frequency_penalty, self.params.presence_penalty);
            for (&t, &count) in &self.history.output {
                if let Some(l) = logits.get_mut(t as usize) {
                    *l -= count as f32 * freq + pres;
                }
            }
        }
    }

    fn pick(&mut self, logits: &[f32]) -> u32 {
        if logits.is_empty() {
            return 0;
        }
        if self.is_greedy() {
            return math::argmax(logits) as u32;
        }
        let max = math::max(logits);
        if !max.is_finite() {
            // All -inf (nothing allowed) or a +inf (certain): the argmax is the only sane pick.
            return math::argmax(logits) as u32;
        }
        let p = &self.params;
        let vocab = logits.len();
        let top_k = (p.top_k > 0 && p.top_k < vocab).then_some(p.top_k);
        let top_p = (p.top_p < 1.0).then_some(p.top_p.max(0.0));
        let min_p = (p.min_p > 0.0).then_some(p.min_p);
        let total = math::softmax_weights(logits, max, 1.0 / p.temperature, &mut self.weights);
        if top_k.is_none() && top_p.is_none() && min_p.is_none() {
            return self.draw_from_row(total, logits);
        }
        self.gather_candidates(total, top_k, top_p, min_p);
        let c = &mut self.candidates;
        c.sort_unstable_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        if let Some(k) = top_k {
            c.truncate(k);
        }
        if let Some(top_p) = top_p {
            let mass = match top_k {
                Some(_) => c.iter().map(|&(w, _)| f64::from(w)).sum(),
                None => total,
            };
            let target = f64::from(top_p) * mass;
            let mut cum = 0.0f64;
            let keep = c
                .iter()
                .position(|&(w, _)| {
                    cum += f64::from(w);
                    cum >= target
                })
                .map_or(c.len(), |i| i + 1);
            c.truncate(keep);
        }
        if let Some(min_p) = min_p {
            // Sorted descending: everything from the first token under the bar goes.
            let keep = c.iter().position(|&(w, _)| w < min_p).unwrap_or(c.len());
            c.truncate(keep.max(1));
        }
        self.draw_from_candidates()
    }

    /// Fills `candidates` with every token whose relative weight clears a threshold, lowering
    /// the threshold until the set is known to hold every token the filters can keep.
    fn gather_candidates(
        &mut self,
        total: f64,
        top_k: Option<usize>,
        top_p: Option<f32>,
        min_p: Option<f32>,
    ) {
        let floor = min_p.unwrap_or(0.0);
        let mut step = 0;
        let mut threshold = LADDER[0].max(floor);
        loop {
            self.candidates.clear();
            self.candidates.extend(
                self.weights
                    .iter()
                    .enumerate()
                    .filter(|&(_, &w)| w >= threshold)
                    .map(|(i, &w)| (w, i as u32)),
            );
            // Below `min_p` nothing survives, so a set gathered at `min_p` is complete unless
            // top_k and top_p together need the whole top-k mass for renormalization.
            let at_min_p = min_p.is_some_and(|m| threshold <= m);
            let enough = threshold <= 0.0
                || match (top_k, top_p) {
                    (Some(k), _) => {
                        self.candidates.len() >= k || (at_min_p && top_p.is_none())
                    }
                    (None, Some(top_p)) => {
                        at_min_p || {
                            let mass: f64 =
                                self.candidates.iter().map(|&(w, _)| f64::from(w)).sum();
                            mass >= f64::from(top_p) * total
                        }
                    }
                    (None, None) => at_min_p,
                };
            if enough {
                return;
            }
            step += 1;
            let next = LADDER.get(step).copied().unwrap_or(0.0);
            threshold = if threshold > floor && next < floor {
                floor
            } else {
                next
            };
        }
    }

    fn draw_from_row(&mut self, total: f64, logits: &[f32]) -> u32 {
        let target = self.rng.random::<f64>() * total;
        let mut cum = 0.0f64;
        const BLOCK: usize = 512;
        for (b, block) in self.weights.chunks(BLOCK).enumerate() {
            let block_sum: f32 = block.iter().sum();
            if cum + f64::from(block_sum) < target {
                cum += f64::from(block_sum);
                continue;
            }
            for (i, &w) in block.iter().enumerate() {
                cum += f64::from(w);
                if cum > target {
                    return (b * BLOCK + i) as u32;
                }
            }
        }
        // Only rounding gets here (the draw landed in the last ulp of the mass).
        math::argmax(logits) as u32
    }

    fn draw_from_candidates(&mut self) -> u32 {
        let c = &self.candidates;
        let mass: f64 = c.iter().map(|&(w, _)| f64::from(w)).sum();
        let target = self.rng.random::<f64>() * mass;
        let mut cum = 0.0f64;
        for &(w, t) in c {
            cum += f64::from(w);
            if cum > target {
                return t;
            }
        }
        c.first().map_or(0, |&(_, t)| t)
    }
}

/// Natural-log softmax of `logits`: the logprob of `chosen` and the `top_n` most likely tokens,
/// best first (lowest id first on ties). Numerically stable (max subtracted); NaN logits count
/// as impossible. An out-of-range `chosen` gets `-inf`.
///
/// Temperature is not applied: OpenAI and vLLM report the model's own distribution.
pub fn logprobs(logits: &[f32], chosen: u32, top_n: usize) -> (f32, Vec<(u32, f32)>) {
    let max = math::max(logits);
    if !max.is_finite() {
        let lp = |i: usize| match logits.get(i) {
            Some(&l) if l == max && max > 0.0 => 0.0,
            _ => f32::NEG_INFINITY,
        };
        let top = top_indices(logits, top_n);
        return (
            lp(chosen as usize),
            top.into_iter().map(|i| (i, lp(i as usize))).collect(),
        );
    }
    let log_total = max + math::sum_exp(logits, max).ln() as f32;
    let lp = |l: f32| if l.is_nan() { f32::NEG_INFINITY } else { l - log_total };
    let chosen_lp = logits
        .get(chosen as usize)
        .map_or(f32::NEG_INFINITY, |&l| lp(l));
    let top = top_indices(logits, top_n)
        .into_iter()
        .map(|i| (i, lp(logits[i as usize])))
        .collect();
    (chosen_lp, top)
}

/// Ids of the `n` largest logits, best first; a bounded insertion list, so O(V) for small `n`.
fn top_indices(logits: &[f32], n: usize) -> Vec<u32> {
    let n = n.min(logits.len());
    if n == 0 {
        return Vec::new();
    }
    let mut best: Vec<(f32, u32)> = Vec::with_capacity(n + 1);
    for (i, &l) in logits.iter().enumerate() {
        if l.is_nan() || (best.len() == n && l <= best[n - 1].0) {
            continue;
        }
        let at = best.partition_point(|&(b, _)| b >= l);
        best.insert(at, (l, i as u32));
        best.truncate(n);
    }
    best.into_iter().map(|(_, i)| i).collect()
}
