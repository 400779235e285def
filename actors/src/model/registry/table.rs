//! The registry's bookkeeping as a plain struct: which models are resident, which are busy, and
//! which idle ones to unload so another fits the budget. No actors and no clocks of its own
//! (callers pass `now`), so every decision is tested synchronously with fake residents.

use std::time::{Duration, Instant};

/// What a resident model is doing, as its handle reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// The engine is being built on its thread; requests queue behind it.
    Loading,
    /// The engine serves.
    Ready,
    /// Loading failed or the engine died; the reason.
    Failed(String),
}

/// A loaded model's handle as the table sees it (a `ModelHandle` in production).
pub trait Resident: Clone {
    /// Its phase now.
    fn phase(&self) -> Phase;
    /// Bytes of weights once loaded; `None` while loading.
    fn weight_bytes(&self) -> Option<u64>;
}

/// Bounds on what stays resident; 0 means no bound.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Models resident at once.
    pub max_models: usize,
    /// Weights plus KV reserve of all resident models, bytes.
    pub max_bytes: u64,
}

/// The fixed facts of one configured model.
#[derive(Debug, Clone, PartialEq)]
pub struct SlotConfig {
    /// Canonical id.
    pub id: String,
    /// How long it stays resident after its last request; `None`: for ever.
    pub keep_alive: Option<Duration>,
    /// KV memory budgeted on top of the weights (prefix cache and running sequences).
    pub kv_reserve_bytes: u64,
    /// Weight bytes assumed before the first load (e.g. the file size).
    pub estimated_weight_bytes: u64,
}

/// One configured model and its residency.
#[derive(Debug)]
pub struct Slot<H> {
    /// Its configuration.
    pub config: SlotConfig,
    /// The handle while resident.
    pub resident: Option<H>,
    /// Bumped on every load, so a lease from an earlier load cannot touch a later one.
    pub generation: u64,
    /// Requests holding a lease.
    pub active: usize,
    /// When the last lease ended (or the model loaded).
    pub last_used: Instant,
    /// When the current load began.
    pub loaded_at: Option<Instant>,
    /// Keep-alive after the last request (a request's own `keep_alive`, else the config's).
    pub keep_alive: Option<Duration>,
    /// Loads started.
    pub loads: u64,
    /// Unloads done.
    pub unloads: u64,
    /// Weight bytes seen at the last load, a better estimate than the file size.
    pub known_weight_bytes: Option<u64>,
}

/// What to do for a request to a model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// It is resident (loading, ready or failed): use its handle.
    Resident,
    /// Load it after unloading these idle slots (least recently used first).
    Load {
        /// Slots to unload first.
        evict: Vec<usize>,
    },
    /// The budget is full of busy models: wait for one to go idle.
    Wait,
}

/// Every configured model.
#[derive(Debug)]
pub struct Table<H> {
    /// One slot per configured model, in configuration order.
    pub slots: Vec<Slot<H>>,
    /// The residency bounds.
    pub limits: Limits,
}

impl<H: Resident> Table<H> {
    /// All models unloaded.
    pub fn new(configs: Vec<SlotConfig>, limits: Limits, now: Instant) -> Self {
        let slots = configs
            .into_iter()
            .map(|config| Slot {
                keep_alive: config.keep_alive,
                config,
                resident: None,
                generation: 0,
                active: 0,
                last_used: now,
                loaded_at: None,
                loads: 0,
                unloads: 0,
                known_weight_bytes: None,
            })
            .collect();
        Self { slots, limits }
    }

    /// The slot of a canonical id.
    pub fn index(&self, id: &str) -> Option<usize> {
        self.slots.iter().position(|s| s.config.id == id)
    }

    /// Resident and not failed: it holds (or is about to hold) memory.
    fn counts(&self, i: usize) -> bool {
        self.slots[i]
            .resident
            .as_ref()
            .is_some_and(|h| !matches!(h.phase(), Phase::Failed(_)))
    }

    /// Budgeted bytes of a slot: its weights (known, or estimated) plus its KV reserve.
    pub fn budget_bytes(&self, i: usize) -> u64 {
        let s = &self.slots[i];
        let weights = s
            .resident
            .as_ref()
            .and_then(|h| h.weight_bytes())
            .or(s.known_weight_bytes)
            .unwrap_or(s.config.estimated_weight_bytes);
        weights.saturating_add(s.config.kv_reserve_bytes)
    }

    /// Idle residents that may be unloaded, least recently used first. A loading model is not
    /// idle (requests wait on it); a failed one holds no weights and is not counted anyway.
    fn idle_lru(&self, except: usize) -> Vec<usize> {
        let mut idle: Vec<usize> = (0..self.slots.len())
            .filter(|&i| i != except && self.counts(i))
            .filter(|&i| {
                let s = &self.slots[i];
                s.active == 0
                    && s.resident
                        .as_ref()
                        .is_some_and(|h| h.phase() == Phase::Ready)
            })
            .collect();
        idle.sort_by_key(|&i| self.slots[i].last_used);
        idle
    }

    /// Decide how a request for slot `i` is served.
    pub fn plan(&self, i: usize) -> Admission {
        if self.slots[i].resident.is_some() {
            return Admission::Resident;
        }
        let others: Vec<usize> = (0..self.slots.len())
            .filter(|&j| j != i && self.counts(j))
            .collect();
        let mut count = others.len();
        let mut bytes: u64 = others.iter().map(|&j| self.budget_bytes(j)).sum();
        let need = self.budget_bytes(i);
        let fits = |count: usize, bytes: u64| {
            let l = self.limits;
            (l.max_models == 0 || count < l.max_models)
                && (l.max_bytes == 0 || bytes.saturating_add(need) <= l.max_bytes)
        };
        let mut evict = Vec::new();
        for j in self.idle_lru(i) {
            if fits(count, bytes) {
                break;
            }
            evict.push(j);
            count -= 1;
            bytes -= self.budget_bytes(j);
        }
        // A model larger than the byte budget still loads once nothing else is resident:
        // refusing it for ever would help no one.
        if fits(count, bytes) || count == 0 {
            Admission::Load { evict }
        } else {
            Admission::Wait
        }
    }

    /// After a load finished: idle residents (other than `keep`) to unload because the model's
    /// real size put the total over the byte budget.
    pub fn over_budget(&self, keep: usize) -> Vec<usize> {
        if self.limits.max_bytes == 0 {
            return Vec::new();
        }
        let mut total: u64 = (0..self.slots.len())
            .filter(|&j| self.counts(j))
            .map(|j| self.budget_bytes(j))
            .sum();
        let mut out = Vec::new();
        for j in self.idle_lru(keep) {
            if total <= self.limits.max_bytes {
                break;
            }
            total -= self.budget_bytes(j);
            out.push(j);
        }
        out
    }

    /// Idle residents whose keep-alive has run out at `now`.
    pub fn expired(&self, now: Instant) -> Vec<usize> {
        (0..self.slots.len())
            .filter(|&i| {
                let s = &self.slots[i];
                let idle_ready = s.active == 0
                    && s.resident
                        .as_ref()
                        .is_some_and(|h| h.phase() == Phase::Ready);
                idle_ready
                    && s.keep_alive
                        .is_some_and(|ka| now.saturating_duration_since(s.last_used) >= ka)
            })
            .collect()
    }

    /// Take a slot's handle out (the caller drops it, which stops the model thread once the
    /// last in-flight request lets go of it).
    pub fn unload(&mut self, i: usize, now: Instant) -> Option<H> {
        let s = &mut self.slots[i];
        let h = s.resident.take()?;
        if let Some(bytes) = h.weight_bytes() {
            s.known_weight_bytes = Some(bytes);
        }
        s.unloads += 1;
        // Leases of this load still running no longer count (their generation is stale).
        s.active = 0;
        s.loaded_at = None;
        s.last_used = now;
        s.keep_alive = s.config.keep_alive;
        Some(h)
    }

    /// Put a freshly started handle in slot `i`.
    pub fn install(&mut self, i: usize, handle: H, now: Instant) -> u64 {
        let s = &mut self.slots[i];
        s.resident = Some(handle);
        s.generation += 1;
        s.loads += 1;
        s.loaded_at = Some(now);
        s.last_used = now;
        s.generation
    }

    /// A request on slot `i` begins.
    pub fn enter(&mut self, i: usize) -> u64 {
        self.slots[i].active += 1;
        self.slots[i].generation
    }

    /// A request on slot `i` (of load `generation`) ended; `keep_alive` is the request's own,
    /// if it gave one. True when the model should be unloaded now (keep-alive 0).
    pub fn leave(
        &mut self,
        i: usize,
        generation: u64,
        keep_alive: Option<Option<Duration>>,
        now: Instant,
    ) -> bool {
        let s = &mut self.slots[i];
        if s.generation != generation {
            return false;
        }
        s.active = s.active.saturating_sub(1);
        s.last_used = now;
        s.keep_alive = keep_alive.unwrap_or(s.config.keep_alive);
        s.active == 0 && s.keep_alive == Some(Duration::ZERO) && s.resident.is_some()
    }
}
