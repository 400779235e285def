//! Engine state shared between the model thread and the HTTP side, read without messaging.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use mlx_serve_engine::engine::{EngineInfo, EngineStats};

#[derive(Debug)]
pub struct EngineHealth {
    pub(super) epoch: Instant,
    pub(super) loaded: AtomicBool,
    pub(super) alive: AtomicBool,
    /// Milliseconds since `epoch` + 1 when the current step began; 0 while idle.
    pub(super) step_started_ms: AtomicU64,
    /// The current step's [`mlx_serve_engine::engine::Engine::step_weight`], as `f64` bits.
    pub(super) step_weight: AtomicU64,
    pub(super) last_beat_ms: AtomicU64,
    pub(super) queued: AtomicUsize,
    pub(super) running: AtomicUsize,
    pub(super) failure: Mutex<Option<String>>,
    pub(super) info: Mutex<Option<EngineInfo>>,
    /// The engine's cache counters as of its last step.
    pub(super) stats: Mutex<EngineStats>,
}

/// A consistent-enough view of [`EngineHealth`] for `/health` and the watchdog.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthSnapshot {
    /// The engine finished loading.
    pub loaded: bool,
    /// The engine is usable (loaded, not panicked).
    pub alive: bool,
    /// A single step has run longer than the wedge timeout.
    pub wedged: bool,
    /// Requests waiting in the queue.
    pub queued: usize,
    /// Sequences inside the engine.
    pub running: usize,
    /// Milliseconds since the model thread last finished a step or message.
    pub since_heartbeat_ms: u64,
    /// Why the engine is not alive, if it failed.
    pub failure: Option<String>,
    /// Facts about the loaded model.
    pub info: Option<EngineInfo>,
    /// The engine's cache counters as of its last step.
    pub stats: EngineStats,
}

impl Default for EngineHealth {
    fn default() -> Self {
        Self {
            epoch: Instant::now(),
            loaded: AtomicBool::new(false),
            alive: AtomicBool::new(false),
            step_started_ms: AtomicU64::new(0),
            step_weight: AtomicU64::new(1f64.to_bits()),
            last_beat_ms: AtomicU64::new(0),
            queued: AtomicUsize::new(0),
            running: AtomicUsize::new(0),
            failure: Mutex::new(None),
            info: Mutex::new(None),
            stats: Mutex::new(EngineStats::default()),
        }
    }
}

impl EngineHealth {
    pub(super) fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    pub(super) fn beat(&self) {
        self.last_beat_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    /// Reserve a place in the waiting queue; false when `capacity` are waiting already.
    pub fn try_reserve(&self, capacity: usize) -> bool {
        self.queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |q| {
                (q < capacity).then_some(q + 1)
            })
            .is_ok()
    }

    pub(super) fn release(&self, n: usize) {
        let _ = self
            .queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |q| {
                Some(q.saturating_sub(n))
            });
    }

    /// Record a fatal failure; the watchdog restarts or exits.
    pub fn fail(&self, why: String) {
        self.alive.store(false, Ordering::Release);
        if let Ok(mut f) = self.failure.lock() {
            *f = Some(why);
        }
    }

    /// Sets the weight of the step about to run (see [`mlx_serve_engine::engine::Engine::step_weight`]).
    pub(super) fn set_step_weight(&self, weight: f64) {
        let w = if weight.is_finite() {
            weight.max(1.0)
        } else {
            1.0
        };
        self.step_weight.store(w.to_bits(), Ordering::Release);
    }

    /// The current state; `wedge_timeout` (times the current step's weight) decides whether a
    /// long step counts as wedged.
    pub fn snapshot(&self, wedge_timeout: Duration) -> HealthSnapshot {
        let now = self.now_ms();
        let started = self.step_started_ms.load(Ordering::Acquire);
        let weight = f64::from_bits(self.step_weight.load(Ordering::Acquire)).max(1.0);
        let allowed = wedge_timeout.as_secs_f64() * 1000.0 * weight;
        let wedged = started != 0 && now.saturating_sub(started - 1) as f64 > allowed;
        HealthSnapshot {
            loaded: self.loaded.load(Ordering::Acquire),
            alive: self.alive.load(Ordering::Acquire),
            wedged,
            queued: self.queued.load(Ordering::Acquire),
            running: self.running.load(Ordering::Acquire),
            since_heartbeat_ms: now.saturating_sub(self.last_beat_ms.load(Ordering::Relaxed)),
            failure: self.failure.lock().ok().and_then(|f| f.clone()),
            info: self.info.lock().ok().and_then(|i| i.clone()),
            stats: self.stats.lock().map(|s| *s).unwrap_or_default(),
        }
    }
}
