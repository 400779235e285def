//! The model registry: every configured model, the resident ones each on its own `ModelActor`
//! thread (a [`ModelHandle`]), loaded when a request first names them and unloaded when idle.
//!
//! The registry never looks inside an actor: loading is `ModelHandle::start` (the engine builds on
//! its new thread while requests queue in its mailbox), unloading is dropping the handle (the
//! thread ends, and the engine with its prefix cache is freed, once the last in-flight request
//! lets go of its clone). Every decision (what to load, which idle model to unload for room,
//! keep-alive expiry) is made by the plain [`Table`]; this module adds the lock, the waiting and
//! the leases that tell the table when a request ends.

mod table;
#[cfg(test)]
mod tests;

use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::Notify;

use super::actor::{EngineFactory, EngineHealth, HealthSnapshot, ModelHandle, Policy};
pub use table::{Admission, Limits, Phase, Resident, SlotConfig, Table};

/// One configured model.
pub struct ModelSpec {
    /// Id, keep-alive and memory figures.
    pub config: SlotConfig,
    /// Builds its engine (on the model thread).
    pub factory: EngineFactory,
    /// Requests that may wait in its queue.
    pub queue_capacity: usize,
    /// Admission order and preemption of its scheduler.
    pub policy: Policy,
}

impl Resident for ModelHandle {
    fn phase(&self) -> Phase {
        let h = self.health().snapshot(Duration::MAX);
        match (h.failure, h.loaded) {
            (Some(why), _) => Phase::Failed(why),
            (None, true) => Phase::Ready,
            (None, false) => Phase::Loading,
        }
    }

    fn weight_bytes(&self) -> Option<u64> {
        self.health()
            .snapshot(Duration::MAX)
            .info
            .map(|i| i.weight_bytes)
    }
}

/// A model's state as users see it (`/health`, `/v1/models`, `ps`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelState {
    /// Not resident.
    Unloaded,
    /// Its engine is being built.
    Loading,
    /// Serving.
    Ready,
    /// Loading failed, or the engine died.
    Failed,
}

/// One model's residency, for display and metrics.
#[derive(Debug, Clone)]
pub struct ModelStatus {
    /// Canonical id.
    pub id: String,
    /// Its state.
    pub state: ModelState,
    /// Why it failed.
    pub error: Option<String>,
    /// Weights plus KV reserve while resident (what the byte budget counts), else 0.
    pub resident_bytes: u64,
    /// Weight bytes of the loaded engine.
    pub weight_bytes: Option<u64>,
    /// Requests using it now.
    pub active: usize,
    /// Seconds since its last request ended, while resident and idle.
    pub idle_s: Option<f64>,
    /// Its keep-alive now; `None`: for ever.
    pub keep_alive_s: Option<f64>,
    /// Seconds until keep-alive unloads it, while resident and idle.
    pub expires_in_s: Option<f64>,
    /// Loads started since the server started.
    pub loads: u64,
    /// Unloads since the server started.
    pub unloads: u64,
    /// The engine's shared state while resident.
    pub health: Option<HealthSnapshot>,
}

/// Why a request could not get a model.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AcquireError {
    /// No configured model has this id.
    #[error("no model `{0}` is configured")]
    Unknown(String),
    /// It failed to load, or its engine died.
    #[error("model `{id}` is unavailable: {reason}")]
    Failed {
        /// The model.
        id: String,
        /// Why.
        reason: String,
    },
    /// Every resident model is busy and the budget has no room for this one.
    #[error("model `{id}` cannot be loaded now: the resident models are all busy and `server.max_loaded_models`/`max_loaded_bytes` leave no room (waited {waited_s} s)")]
    Busy {
        /// The model.
        id: String,
        /// Seconds waited.
        waited_s: u64,
    },
}

/// Called (from the sweeper) once the engines of unloaded models have been dropped, so the
/// front can hand freed memory back to the system (MLX's buffer cache, malloc's arenas).
pub type ReleaseHook = Arc<dyn Fn() + Send + Sync>;

struct Inner {
    table: Mutex<Table<ModelHandle>>,
    factories: Vec<EngineFactory>,
    queue_capacity: Vec<usize>,
    policies: Vec<Policy>,
    /// Woken when a lease ends or a model unloads: budget waiters look again.
    notify: Notify,
    /// Engines of unloaded models whose threads may still be finishing.
    draining: Mutex<Vec<Weak<EngineHealth>>>,
    on_released: Option<ReleaseHook>,
    /// Ids unloaded since the last [`ModelRegistry::take_unloaded`].
    unloaded: Mutex<Vec<String>>,
}

/// The shared registry. Cheap to clone.
#[derive(Clone)]
pub struct ModelRegistry {
    inner: Arc<Inner>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl ModelRegistry {
    /// Every model unloaded; `on_released` runs after unloaded engines are gone.
    pub fn new(specs: Vec<ModelSpec>, limits: Limits, on_released: Option<ReleaseHook>) -> Self {
        let mut configs = Vec::with_capacity(specs.len());
        let mut factories = Vec::with_capacity(specs.len());
        let mut queue_capacity = Vec::with_capacity(specs.len());
        let mut policies = Vec::with_capacity(specs.len());
        for s in specs {
            configs.push(s.config);
            factories.push(s.factory);
            queue_capacity.push(s.queue_capacity);
            policies.push(s.policy);
        }
        Self {
            inner: Arc::new(Inner {
                table: Mutex::new(Table::new(configs, limits, Instant::now())),
                factories,
                queue_capacity,
                policies,
                notify: Notify::new(),
                draining: Mutex::new(Vec::new()),
                on_released,
                unloaded: Mutex::new(Vec::new()),
            }),
        }
    }

    /// Canonical ids in configuration order.
    pub fn ids(&self) -> Vec<String> {
        lock(&self.inner.table)
            .slots
            .iter()
            .map(|s| s.config.id.clone())
            .collect()
    }

    fn index(&self, id: &str) -> Result<usize, AcquireError> {
        lock(&self.inner.table)
            .index(id)
            .ok_or_else(|| AcquireError::Unknown(id.to_owned()))
    }

    /// The resident handle of a model, if it is resident.
    pub fn handle(&self, id: &str) -> Option<ModelHandle> {
        let t = lock(&self.inner.table);
        t.index(id).and_then(|i| t.slots[i].resident.clone())
    }

    /// Start loading slot `i` (the table must have planned it).
    fn start_locked(&self, t: &mut Table<ModelHandle>, i: usize) {
        tracing::info!(model = %t.slots[i].config.id, "loading model");
        let handle = ModelHandle::start_with(
            self.inner.factories[i].clone(),
            self.inner.queue_capacity[i],
            self.inner.policies[i],
        );
        t.install(i, handle, Instant::now());
    }

    fn unload_locked(&self, t: &mut Table<ModelHandle>, i: usize, why: &str) -> bool {
        let Some(handle) = t.unload(i, Instant::now()) else {
            return false;
        };
        tracing::info!(model = %t.slots[i].config.id, reason = why, "unloading model");
        lock(&self.inner.draining).push(Arc::downgrade(handle.health()));
        lock(&self.inner.unloaded).push(t.slots[i].config.id.clone());
        drop(handle);
        self.inner.notify.notify_waiters();
        true
    }

    /// A lease on a model for one request: loads it if needed (unloading idle models for room),
    /// waiting up to `wait` when the budget is full of busy models. The lease's handle may still
    /// be loading: requests queue behind the load.
    pub async fn acquire(&self, id: &str, wait: Duration) -> Result<Lease, AcquireError> {
        let i = self.index(id)?;
        let started = Instant::now();
        loop {
            let notified = self.inner.notify.notified();
            tokio::pin!(notified);
            // Registered before the table is read, so a release in between is not missed.
            notified.as_mut().enable();
            {
                let mut t = lock(&self.inner.table);
                match t.plan(i) {
                    Admission::Resident => {
                        let Some(handle) = t.slots[i].resident.clone() else {
                            continue;
                        };
                        if let Phase::Failed(reason) = handle.phase() {
                            return Err(AcquireError::Failed {
                                id: id.to_owned(),
                                reason,
                            });
                        }
                        let generation = t.enter(i);
                        return Ok(Lease {
                            registry: self.clone(),
                            slot: i,
                            generation,
                            handle,
                            keep_alive: None,
                        });
                    }
                    Admission::Load { evict } => {
                        let why = format!("making room for {id}");
                        for j in evict {
                            self.unload_locked(&mut t, j, &why);
                        }
                        self.start_locked(&mut t, i);
                        continue;
                    }
                    Admission::Wait => {}
                }
            }
            let left = wait.saturating_sub(started.elapsed());
            if left.is_zero() || tokio::time::timeout(left, notified).await.is_err() {
                return Err(AcquireError::Busy {
                    id: id.to_owned(),
                    waited_s: started.elapsed().as_secs(),
                });
            }
        }
    }

    /// Load a model now without a request (preload, `POST /v1/models/{id}/load`). A failed
    /// model is loaded afresh. False when it was already resident.
    pub fn load(&self, id: &str) -> Result<bool, AcquireError> {
        let i = self.index(id)?;
        let mut t = lock(&self.inner.table);
        if let Some(h) = &t.slots[i].resident {
            if !matches!(h.phase(), Phase::Failed(_)) {
                return Ok(false);
            }
            self.unload_locked(&mut t, i, "reloading after a failure");
        }
        match t.plan(i) {
            Admission::Load { evict } => {
                let why = format!("making room for {id}");
                for j in evict {
                    self.unload_locked(&mut t, j, &why);
                }
                self.start_locked(&mut t, i);
                Ok(true)
            }
            Admission::Resident => Ok(false),
            Admission::Wait => Err(AcquireError::Busy {
                id: id.to_owned(),
                waited_s: 0,
            }),
        }
    }

    /// Unload a model now; requests already running on it finish first. False when it was not
    /// resident.
    pub fn unload(&self, id: &str) -> Result<bool, AcquireError> {
        let i = self.index(id)?;
        let mut t = lock(&self.inner.table);
        Ok(self.unload_locked(&mut t, i, "asked to"))
    }

    /// Replace a resident model's engine with a fresh one (the watchdog, after a panic or a
    /// wedge). Requests running on the old one fail; new ones queue on the new one.
    pub fn restart(&self, id: &str) -> Result<(), AcquireError> {
        let i = self.index(id)?;
        let mut t = lock(&self.inner.table);
        // Leases on the old engine stop counting (their generation is stale): its requests fail.
        self.unload_locked(&mut t, i, "restarting a failed engine");
        self.start_locked(&mut t, i);
        Ok(())
    }

    /// Make an already started handle the resident engine of `id` (a caller that started the
    /// model itself, e.g. a test or a single-model setup built before the registry).
    pub fn adopt(&self, id: &str, handle: ModelHandle) -> Result<(), AcquireError> {
        let i = self.index(id)?;
        let mut t = lock(&self.inner.table);
        self.unload_locked(&mut t, i, "replaced");
        t.install(i, handle, Instant::now());
        Ok(())
    }

    /// Periodic housekeeping: unload idle models past their keep-alive or over the byte budget,
    /// run the release hook once unloaded engines are gone, wake budget waiters.
    pub fn sweep(&self) {
        {
            let mut t = lock(&self.inner.table);
            for i in t.expired(Instant::now()) {
                self.unload_locked(&mut t, i, "keep_alive expired");
            }
            for i in t.over_budget(usize::MAX) {
                self.unload_locked(&mut t, i, "over server.max_loaded_bytes");
            }
        }
        let released = {
            let mut d = lock(&self.inner.draining);
            let before = d.len();
            d.retain(|w| w.strong_count() > 0);
            before - d.len()
        };
        if released > 0 {
            tracing::debug!(engines = released, "unloaded engines released");
            if let Some(hook) = &self.inner.on_released {
                hook();
            }
        }
        // A model that finished loading is now idle and may be unloaded for a waiter.
        self.inner.notify.notify_waiters();
    }

    /// The ids unloaded since the last call (the front drops their response-cache entries).
    pub fn take_unloaded(&self) -> Vec<String> {
        std::mem::take(&mut *lock(&self.inner.unloaded))
    }

    /// Engines unloaded whose threads have not finished yet.
    pub fn draining(&self) -> usize {
        lock(&self.inner.draining)
            .iter()
            .filter(|w| w.strong_count() > 0)
            .count()
    }

    /// Every model's residency now.
    pub fn status(&self, wedge_timeout: Duration) -> Vec<ModelStatus> {
        let t = lock(&self.inner.table);
        let now = Instant::now();
        (0..t.slots.len())
            .map(|i| {
                let s = &t.slots[i];
                let health = s.resident.as_ref().map(|h| h.health().snapshot(wedge_timeout));
                let state = match &health {
                    None => ModelState::Unloaded,
                    Some(h) if h.failure.is_some() || h.wedged => ModelState::Failed,
                    Some(h) if h.loaded => ModelState::Ready,
                    Some(_) => ModelState::Loading,
                };
                let idle = (state == ModelState::Ready && s.active == 0)
                    .then(|| now.saturating_duration_since(s.last_used));
                let resident = matches!(state, ModelState::Ready | ModelState::Loading);
                ModelStatus {
                    id: s.config.id.clone(),
                    state,
                    error: health.as_ref().and_then(|h| {
                        if h.wedged {
                            Some("the engine is wedged: a step exceeded server.engine_wedge_timeout_s".to_owned())
                        } else {
                            h.failure.clone()
                        }
                    }),
                    resident_bytes: if resident { t.budget_bytes(i) } else { 0 },
                    weight_bytes: health.as_ref().and_then(|h| h.info.as_ref()).map(|i| i.weight_bytes),
                    active: s.active,
                    idle_s: idle.map(|d| d.as_secs_f64()),
                    keep_alive_s: s.keep_alive.map(|d| d.as_secs_f64()),
                    expires_in_s: match (idle, s.keep_alive) {
                        (Some(idle), Some(ka)) => Some(ka.saturating_sub(idle).as_secs_f64()),
                        _ => None,
                    },
                    loads: s.loads,
                    unloads: s.unloads,
                    health,
                }
            })
            .collect()
    }

    fn release(&self, slot: usize, generation: u64, keep_alive: Option<Option<Duration>>) {
        let mut t = lock(&self.inner.table);
        if t.leave(slot, generation, keep_alive, Instant::now()) {
            self.unload_locked(&mut t, slot, "keep_alive 0");
        }
        drop(t);
        self.inner.notify.notify_waiters();
    }
}

/// One request's claim on a model: while it lives the model counts as busy and is not unloaded
/// for room or by keep-alive. Dropping it ends the request's use.
pub struct Lease {
    registry: ModelRegistry,
    slot: usize,
    generation: u64,
    handle: ModelHandle,
    keep_alive: Option<Option<Duration>>,
}

impl Lease {
    /// The model's handle (possibly still loading).
    pub fn handle(&self) -> &ModelHandle {
        &self.handle
    }

    /// The request's own keep-alive (Ollama's meaning): how long the model stays resident after
    /// this request; `Some(None)`: for ever; `Some(Some(0))`: unload right after it.
    pub fn set_keep_alive(&mut self, keep_alive: Option<Duration>) {
        self.keep_alive = Some(keep_alive);
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.registry
            .release(self.slot, self.generation, self.keep_alive);
    }
}
