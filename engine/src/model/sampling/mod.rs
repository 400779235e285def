//! Picking the next token from a row of logits on the host, and reporting logprobs.
//!
//! The engine copies the last position's logits to a `&mut [f32]` and calls [`Sampler::sample`]
//! once per decoded token. Processing follows Hugging Face `generate` (and vLLM, which applies
//! the same steps):
//!
//! 1. penalties, written back into the row: repetition (HF: over prompt and output tokens,
//!    positive logits divided, others multiplied), then frequency and presence (OpenAI: output
//!    tokens only, `logit -= count·frequency + presence`), then `logit_bias` (added as is);
//! 2. temperature 0 (or `top_k == 1`): greedy argmax, lowest id on ties, no RNG touched;
//! 3. otherwise softmax at the temperature, then `top_k`, then `top_p` over what `top_k` kept
//!    (smallest most-likely prefix whose mass reaches `top_p`), then `min_p` (drop tokens below
//!    `min_p` × the top probability), then one draw from what is left.
//!
//! Speed: nothing sorts the vocabulary. Filters only keep high-probability tokens, so
//! candidates are gathered with linear threshold scans (relative weight ≥ 1e-2, 1e-3, … 1e-9,
//! then everything) until the set provably holds every survivor; `top_k` then takes a linear
//! `select_nth_unstable` and `top_p` a weighted quickselect over that set, so a step is O(V)
//! even for a flat distribution. Vocabulary-wide passes are written to vectorize (`math`).

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

/// The truncation filters in force for one step (`None` = off).
#[derive(Debug, Clone, Copy)]
struct Filters {
    top_k: Option<usize>,
    top_p: Option<f32>,
    min_p: Option<f32>,
}

/// Candidate thresholds on the relative weight `p / p_max`, tried in order.
/// Steps of 10 keep the gathered set within about 10× (in weight) of the cutoff.
const LADDER: [f32; 7] = [1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-9];

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
        for &(t, bias) in &self.params.logit_bias {
            if let Some(l) = logits.get_mut(t as usize) {
                *l += bias;
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
        let temperature = p.temperature;
        if top_k.is_none() && top_p.is_none() && min_p.is_none() {
            let total = math::softmax_weights(logits, max, 1.0 / temperature, &mut self.weights);
            return self.draw_from_row(total, logits);
        }
        // Only top_p over the whole row needs the whole row's mass; the other filters look at
        // the few tokens near the top and never exponentiate the rest.
        let (total, start) = match (top_k, top_p) {
            (None, Some(top_p)) => {
                math::top_mass_threshold(logits, max, 1.0 / temperature, f64::from(top_p))
            }
            _ => (0.0, LADDER[0]),
        };
        let filters = Filters {
            top_k,
            top_p,
            min_p,
        };
        self.gather_candidates(logits, max, start, filters, total);
        let c = &mut self.candidates;
        if let Some(k) = top_k.filter(|&k| k < c.len()) {
            c.select_nth_unstable_by(k - 1, by_weight_desc);
            c.truncate(k);
        }
        if let Some(top_p) = top_p {
            let mass = match top_k {
                Some(_) => weight_sum(c),
                None => total,
            };
            let keep = nucleus_len(c, f64::from(top_p) * mass);
            c.truncate(keep);
        }
        if let Some(min_p) = min_p {
            // The top token has relative weight 1 and always survives min_p ≤ 1.
            let best = c.iter().copied().min_by(by_weight_desc);
            c.retain(|&(w, _)| w >= min_p);
            if let (true, Some(best)) = (c.is_empty(), best) {
                c.push(best);
            }
        }
        self.draw_from_candidates()
    }

    /// Fills `candidates` with every token whose relative weight clears a threshold, lowering
    /// the threshold until the set is known to hold every token the filters can keep.
    fn gather_candidates(&mut self, logits: &[f32], max: f32, start: f32, f: Filters, total: f64) {
        let Filters {
            top_k,
            top_p,
            min_p,
        } = f;
        let temperature = self.params.temperature;
        let scale = 1.0 / temperature;
        let floor = min_p.unwrap_or(0.0);
        // The ladder continues below the starting threshold if that one falls short.
        let mut step = LADDER.iter().take_while(|&&t| t >= start).count();
        let mut threshold = start.max(floor);
        loop {
            // `w >= t` as a bound on the logit, loosened a little so rounding in the
            // exponential never drops a token that clears `t`; extra tokens are harmless.
            let bar = if threshold > 0.0 {
                let bar = max + temperature * threshold.ln();
                bar - 1e-5 * (1.0 + bar.abs())
            } else {
                f32::NEG_INFINITY
            };
            // Below `min_p` nothing survives, so a set gathered at `min_p` is complete unless
            // top_k and top_p together need the whole top-k mass for renormalization.
            let at_min_p = min_p.is_some_and(|m| threshold <= m);
            let complete_at_min_p = at_min_p && (top_k.is_none() || top_p.is_none());
            // Counting is cheaper than gathering: skip thresholds that cannot hold top_k.
            let too_few_for_k = top_k.is_some_and(|k| math::count_at_least(logits, bar) < k);
            if threshold <= 0.0 || complete_at_min_p || !too_few_for_k {
                self.candidates.clear();
                self.candidates.extend(
                    logits
                        .iter()
                        .enumerate()
                        .filter(|&(_, &l)| l >= bar)
                        .map(|(i, &l)| (math::exp_neg((l - max) * scale), i as u32)),
                );
                let enough = threshold <= 0.0
                    || complete_at_min_p
                    || top_k.is_some()
                    || top_p.is_some_and(|p| weight_sum(&self.candidates) >= f64::from(p) * total);
                if enough {
                    return;
                }
            }
            let next = LADDER.get(step).copied().unwrap_or(0.0);
            step += 1;
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

/// Heaviest first, lowest id first among equal weights: a total order, so the top-k set and
/// the nucleus are well defined.
fn by_weight_desc(a: &(f32, u32), b: &(f32, u32)) -> std::cmp::Ordering {
    b.0.total_cmp(&a.0).then(a.1.cmp(&b.1))
}

fn weight_sum(c: &[(f32, u32)]) -> f64 {
    c.iter().map(|&(w, _)| f64::from(w)).sum()
}

/// Reorders `c` so that its first `n` entries are the smallest heaviest-first prefix whose
/// weight reaches `target`, and returns `n` (at least 1; all of `c` if the target is not
/// reached). A weighted quickselect: expected O(len), no full sort.
fn nucleus_len(c: &mut [(f32, u32)], target: f64) -> usize {
    // Invariant: c[..lo] is kept and weighs `kept`; the answer lies in lo+1..=hi.
    let (mut lo, mut hi, mut kept) = (0usize, c.len(), 0.0f64);
    while hi - lo > 64 {
        let mid = lo + (hi - lo) / 2;
        c[lo..hi].select_nth_unstable_by(mid - lo, by_weight_desc);
        let upper = weight_sum(&c[lo..=mid]);
        if kept + upper >= target {
            hi = mid + 1;
        } else {
            kept += upper;
            lo = mid + 1;
        }
    }
    c[lo..hi].sort_unstable_by(by_weight_desc);
    for (i, &(w, _)) in c[lo..hi].iter().enumerate() {
        kept += f64::from(w);
        if kept >= target {
            return lo + i + 1;
        }
    }
    hi.max(1).min(c.len())
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
    // `(l - max) - ln Σ` rather than `l - (max + ln Σ)`: the latter loses digits for big logits.
    let log_sum = math::sum_exp(logits, max, 1.0).ln();
    let lp = |l: f32| {
        if l.is_nan() {
            f32::NEG_INFINITY
        } else {
            (f64::from(l - max) - log_sum) as f32
        }
    };
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
