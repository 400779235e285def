//! KV state of recent sequences, reused for the longest shared token prefix of a new prompt, so an
//! agent's turn N+1 prefills only what is new. Bounded in bytes, least recently used goes first.

use super::kv_cache::KvCache;

struct Entry {
    tokens: Vec<u32>,
    cache: KvCache,
    bytes: usize,
    last_used: u64,
}

/// What a lookup found.
pub struct PrefixHit {
    /// A private copy of the cached state, truncated to the reusable prefix.
    pub cache: KvCache,
    /// Number of prompt tokens already in `cache`.
    pub tokens: usize,
}

/// Counters for metrics and `/health`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PrefixStats {
    pub queries: u64,
    pub hits: u64,
    pub tokens_saved: u64,
    pub entries: usize,
    pub bytes: usize,
    /// Entries dropped to stay within the byte budget (least recently used first).
    pub evictions: u64,
}

pub struct PrefixCache {
    entries: Vec<Entry>,
    max_bytes: usize,
    clock: u64,
    stats: PrefixStats,
}

/// A hit takes its entry over (see [`PrefixCache::lookup`]) when it would lose at most this
/// fraction (1/n) of the entry's tokens: a few recomputed tokens, should the entry's own
/// continuation come back, against a copy of the whole state now.
const TAKE_OVER_LOSS: usize = 8;

fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

impl PrefixCache {
    pub fn new(max_bytes: usize) -> Self {
        Self {
            entries: Vec::new(),
            max_bytes,
            clock: 0,
            stats: PrefixStats::default(),
        }
    }

    pub fn stats(&self) -> PrefixStats {
        PrefixStats {
            entries: self.entries.len(),
            bytes: self.entries.iter().map(|e| e.bytes).sum(),
            ..self.stats
        }
    }

    /// The longest cached prefix of `prompt`, leaving at least one prompt token to run (its
    /// logits start generation). Entries are few (bounded by bytes), so a scan is enough.
    /// Writing the hit's buffers never disturbs anyone else holding them: MLX writes in place
    /// only into buffers nothing else refers to, and copies otherwise.
    pub fn lookup(&mut self, prompt: &[u32]) -> Option<PrefixHit> {
        self.stats.queries += 1;
        if self.max_bytes == 0 || prompt.len() < 2 {
            return None;
        }
        self.clock += 1;
        let (best, len) = self.best(prompt)?;
        let held = self.entries[best].tokens.len();
        let mut cache = if held - len <= held / TAKE_OVER_LOSS {
            // Nearly all of the entry is this prompt's prefix (an agent's next turn holds all
            // of it): the sequence takes the entry over instead of sharing it, so its new
            // positions are written into the entry's buffers in place, and the entry it leaves
            // at its end replaces this one. Sharing would copy the whole state onto fresh
            // pages, once per request, and fill the budget with near-duplicates.
            self.entries.swap_remove(best).cache
        } else {
            let entry = &mut self.entries[best];
            entry.last_used = self.clock;
            entry.cache.clone()
        };
        cache.truncate(len);
        self.stats.hits += 1;
        self.stats.tokens_saved += len as u64;
        Some(PrefixHit { cache, tokens: len })
    }

    /// How many of `prompt`'s tokens a lookup would find, without looking up.
    pub fn peek(&self, prompt: &[u32]) -> usize {
        match self.max_bytes {
            0 => 0,
            _ => self.best(prompt).map_or(0, |(_, len)| len),
        }
    }

    /// The entry sharing the longest prefix with `prompt` (at most all but its last token).
    fn best(&self, prompt: &[u32]) -> Option<(usize, usize)> {
        let limit = prompt.len().checked_sub(1)?;
        self.entries
            .iter()
            .enumerate()
            .map(|(i, e)| (i, common_prefix(&e.tokens, prompt).min(limit)))
            .max_by_key(|&(_, len)| len)
            .filter(|&(_, len)| len > 0)
    }

    /// Keeps the state of a finished sequence whose cache holds `tokens`.
    pub fn insert(&mut self, tokens: Vec<u32>, cache: KvCache) {
        let bytes = cache.nbytes();
        if self.max_bytes == 0 || bytes > self.max_bytes || tokens.len() != cache.offset() {
            return;
        }
        self.clock += 1;
        // Already held within a longer entry (a repeated prompt): that one serves it.
        if let Some(e) = self
            .entries
            .iter_mut()
            .find(|e| common_prefix(&e.tokens, &tokens) == tokens.len())
        {
            e.last_used = self.clock;
            return;
        }
        // An entry that is a prefix of the new one is dominated by it.
        self.entries
            .retain(|e| common_prefix(&e.tokens, &tokens) < e.tokens.len());
        self.entries.push(Entry {
            tokens,
            cache,
            bytes,
            last_used: self.clock,
        });
        while self.entries.iter().map(|e| e.bytes).sum::<usize>() > self.max_bytes {
            let Some((oldest, _)) = self
                .entries
                .iter()
                .enumerate()
                .min_by_key(|(_, e)| e.last_used)
            else {
                break;
            };
            self.entries.swap_remove(oldest);
            self.stats.evictions += 1;
        }
    }

    /// Whether entries are kept at all (a byte budget above 0).
    pub fn enabled(&self) -> bool {
        self.max_bytes > 0
    }

    /// Drops the entries that hold a prefix of `tokens` (an entry for `tokens` supersedes
    /// them). Not evictions.
    pub fn forget_prefixes_of(&mut self, tokens: &[u32]) {
        self.entries
            .retain(|e| common_prefix(&e.tokens, tokens) < e.tokens.len());
    }

    pub fn clear(&mut self) {
        self.entries.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mlx_rs::Array;

    fn cache_of(tokens: usize) -> KvCache {
        let mut cache = KvCache::new(1);
        let kv = Array::from_slice(&vec![0.5f32; tokens * 4], &[1, 1, tokens as i32, 4]);
        cache.update(0, &kv, &kv).unwrap();
        cache.advance(tokens);
        cache
    }

    #[test]
    fn counts_evictions_beyond_the_byte_budget_but_not_superseded_prefixes() {
        let one = cache_of(3).nbytes();
        let mut prefixes = PrefixCache::new(2 * one);
        prefixes.insert(vec![1, 2, 3], cache_of(3));
        // Extends the first entry: it replaces it, which is not an eviction.
        prefixes.insert(vec![1, 2, 3], cache_of(3));
        prefixes.insert(vec![7, 8, 9], cache_of(3));
        assert_eq!(
            (prefixes.stats().entries, prefixes.stats().evictions),
            (2, 0)
        );
        prefixes.insert(vec![4, 5, 6], cache_of(3));
        let stats = prefixes.stats();
        assert_eq!((stats.entries, stats.evictions), (2, 1));
        // The least recently used one ([1, 2, 3]) went.
        assert!(prefixes.lookup(&[1, 2, 3, 4]).is_none());
        assert!(prefixes.lookup(&[4, 5, 6, 0]).is_some());
    }

    #[test]
    fn a_hit_on_nearly_all_of_an_entry_takes_it_and_a_partial_one_shares_it() {
        let mut prefixes = PrefixCache::new(64 << 20);
        let system: Vec<u32> = (0..40).collect();
        let mut a = system.clone();
        a.extend([100, 101, 102, 103, 104, 105, 106, 107, 108, 109]);
        prefixes.insert(a.clone(), cache_of(a.len()));
        // Shares 40 of the entry's 50 tokens: the entry stays for its own continuation.
        let mut b = system.clone();
        b.extend([200, 201]);
        assert_eq!(prefixes.lookup(&b).expect("hit").tokens, 40);
        assert_eq!(prefixes.stats().entries, 1);
        // The entry's next turn: it holds all of the entry, which it takes.
        let mut next = a.clone();
        next.extend([7, 8]);
        assert_eq!(prefixes.lookup(&next).expect("hit").tokens, 50);
        assert_eq!(prefixes.stats().entries, 0);
    }

    #[test]
    fn a_prompt_held_inside_a_longer_entry_adds_nothing() {
        let mut prefixes = PrefixCache::new(64 << 20);
        prefixes.insert(vec![1, 2, 3, 4, 5], cache_of(5));
        prefixes.insert(vec![1, 2, 3], cache_of(3));
        assert_eq!(prefixes.stats().entries, 1);
        let hit = prefixes.lookup(&[1, 2, 3, 4, 5, 6]).expect("hit");
        assert_eq!(hit.tokens, 5);
    }
}
