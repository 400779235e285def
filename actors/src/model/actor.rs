//! The `ModelActor`: owns the engine on its own thread and drives it one step per message.
//!
//! It runs in a `SyncContext` (`SyncArbiter::start(1, …)`) because MLX graphs must be built and
//! evaluated on one thread; the engine is built inside the arbiter's factory, on that thread.
//! Generation is driven by `Step` messages the actor sends itself while work remains, so `Submit`,
//! `Cancel` and token counting interleave with a running generation instead of waiting for it.
//!
//! The HTTP side talks to it through a [`ModelHandle`]: admission to the bounded FIFO queue is
//! decided there with atomics (a full queue answers at once, even during a long step), and each
//! request gets a [`Generation`] that cancels its sequence when dropped (client disconnected).
//! [`EngineHealth`] is shared memory the health endpoint reads without messaging the actor.
//! The queue and scheduling logic is the plain [`Scheduler`], tested without an actor system.

use std::collections::{HashMap, VecDeque};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use crate::engine::{Engine, EngineError, EngineInfo, GenerateRequest, Prompt, SeqEvent, SeqId};

/// Builds the engine; called on the model thread (MLX needs that).
pub type EngineFactory = Arc<dyn Fn() -> Result<Box<dyn Engine>, EngineError> + Send + Sync>;

/// Why a request was not queued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    /// The waiting queue holds `capacity` requests already.
    #[error("the server is busy: {capacity} requests are already waiting")]
    QueueFull {
        /// Configured queue size.
        capacity: usize,
    },
    /// The engine is not loaded, failed or its thread is gone.
    #[error("the model engine is unavailable: {0}")]
    Unavailable(String),
}

/// Engine state shared with the HTTP side; written by the model thread, read lock-free-ish.
#[derive(Debug)]
pub struct EngineHealth {
    epoch: Instant,
    loaded: AtomicBool,
    alive: AtomicBool,
    /// Milliseconds since `epoch` + 1 when the current step began; 0 while idle.
    step_started_ms: AtomicU64,
    last_beat_ms: AtomicU64,
    queued: AtomicUsize,
    running: AtomicUsize,
    failure: Mutex<Option<String>>,
    info: Mutex<Option<EngineInfo>>,
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
}

impl Default for EngineHealth {
    fn default() -> Self {
        Self {
            epoch: Instant::now(),
            loaded: AtomicBool::new(false),
            alive: AtomicBool::new(false),
            step_started_ms: AtomicU64::new(0),
            last_beat_ms: AtomicU64::new(0),
            queued: AtomicUsize::new(0),
            running: AtomicUsize::new(0),
            failure: Mutex::new(None),
            info: Mutex::new(None),
        }
    }
}

impl EngineHealth {
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn beat(&self) {
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

    fn release(&self, n: usize) {
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

    /// The current state; `wedge_timeout` decides whether a long step counts as wedged.
    pub fn snapshot(&self, wedge_timeout: Duration) -> HealthSnapshot {
        let now = self.now_ms();
        let started = self.step_started_ms.load(Ordering::Acquire);
        let wedged =
            started != 0 && now.saturating_sub(started - 1) > wedge_timeout.as_millis() as u64;
        HealthSnapshot {
            loaded: self.loaded.load(Ordering::Acquire),
            alive: self.alive.load(Ordering::Acquire),
            wedged,
            queued: self.queued.load(Ordering::Acquire),
            running: self.running.load(Ordering::Acquire),
            since_heartbeat_ms: now.saturating_sub(self.last_beat_ms.load(Ordering::Relaxed)),
            failure: self.failure.lock().ok().and_then(|f| f.clone()),
            info: self.info.lock().ok().and_then(|i| i.clone()),
        }
    }
}

struct Waiting {
    id: SeqId,
    request: GenerateRequest,
    events: UnboundedSender<SeqEvent>,
}

/// FIFO queue in front of the engine plus the routing of engine events to requests.
pub struct Scheduler {
    queue: VecDeque<Waiting>,
    running: HashMap<SeqId, UnboundedSender<SeqEvent>>,
    health: Arc<EngineHealth>,
}

fn is_terminal(ev: &SeqEvent) -> bool {
    matches!(ev, SeqEvent::Finished { .. } | SeqEvent::Failed(_))
}

impl Scheduler {
    /// An empty scheduler publishing its counts to `health` (whose `queued` counts reservations).
    pub fn new(health: Arc<EngineHealth>) -> Self {
        Self {
            queue: VecDeque::new(),
            running: HashMap::new(),
            health,
        }
    }

    /// Append a request whose queue place was reserved with [`EngineHealth::try_reserve`].
    pub fn push(&mut self, id: SeqId, request: GenerateRequest, events: UnboundedSender<SeqEvent>) {
        self.queue.push_back(Waiting {
            id,
            request,
            events,
        });
    }

    /// Drop a waiting request or stop a running one.
    pub fn cancel(&mut self, id: SeqId, engine: &mut dyn Engine) {
        let before = self.queue.len();
        self.queue.retain(|w| w.id != id);
        self.health.release(before - self.queue.len());
        if self.running.contains_key(&id) {
            engine.cancel(id);
        }
    }

    /// Requests waiting for the engine.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Sequences inside the engine.
    pub fn running(&self) -> usize {
        self.running.len()
    }

    /// Cancel sequences whose client went away; forget waiting ones.
    fn reap_closed(&mut self, engine: &mut dyn Engine) {
        let before = self.queue.len();
        self.queue.retain(|w| !w.events.is_closed());
        self.health.release(before - self.queue.len());
        for (id, tx) in &self.running {
            if tx.is_closed() {
                engine.cancel(*id);
            }
        }
    }

    fn admit(&mut self, engine: &mut dyn Engine) {
        while engine.free_slots() > 0 {
            let Some(w) = self.queue.pop_front() else {
                break;
            };
            self.health.release(1);
            match engine.add(w.id, w.request) {
                Ok(()) => {
                    self.running.insert(w.id, w.events);
                }
                Err(e) => {
                    let _ = w.events.send(SeqEvent::Failed(e));
                }
            }
        }
    }

    /// Admit what fits, run one engine step, route its events. True while work remains.
    pub fn step(&mut self, engine: &mut dyn Engine) -> bool {
        self.reap_closed(engine);
        self.admit(engine);
        if engine.has_work() {
            for (id, ev) in engine.step() {
                let done = is_terminal(&ev);
                if let Some(tx) = self.running.get(&id) {
                    if tx.send(ev).is_err() && !done {
                        engine.cancel(id);
                    }
                }
                if done {
                    self.running.remove(&id);
                }
            }
        }
        self.health
            .running
            .store(self.running.len(), Ordering::Release);
        engine.has_work() || (!self.queue.is_empty() && engine.free_slots() > 0)
    }

    /// Fail every waiting and running request (engine lost).
    pub fn fail_all(&mut self, error: EngineError) {
        for w in self.queue.drain(..) {
            self.health.release(1);
            let _ = w.events.send(SeqEvent::Failed(error.clone()));
        }
        for (_, tx) in self.running.drain() {
            let _ = tx.send(SeqEvent::Failed(error.clone()));
        }
        self.health.running.store(0, Ordering::Release);
    }
}

/// Owns the engine; see the module docs.
pub struct ModelActor {
    engine: Option<Box<dyn Engine>>,
    scheduler: Scheduler,
    health: Arc<EngineHealth>,
    step_pending: bool,
}

impl Actor for ModelActor {
    type Context = SyncContext<Self>;
}

/// Queue a generation; its events arrive on `events` (ends with `Finished` or `Failed`).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Submit {
    /// Sequence id, unique per handle.
    pub id: SeqId,
    /// What to generate.
    pub request: GenerateRequest,
    /// Where the events go; a closed receiver cancels the sequence.
    pub events: UnboundedSender<SeqEvent>,
}

/// Stop a queued or running sequence.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Cancel {
    /// The sequence to stop.
    pub id: SeqId,
}

/// Run one engine step (sent by the actor to itself while work remains).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Step;

/// Count the tokens a prompt renders to.
#[derive(Message)]
#[rtype(result = "Result<usize, EngineError>")]
pub struct CountTokens(pub Prompt);

/// Render a prompt through the chat template.
#[derive(Message)]
#[rtype(result = "Result<String, EngineError>")]
pub struct RenderPrompt(pub Prompt);

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned())
}

impl ModelActor {
    /// Build the engine with `factory` (on the calling thread) and record the outcome in `health`.
    pub fn load(factory: &EngineFactory, health: Arc<EngineHealth>) -> Self {
        let engine = match catch_unwind(AssertUnwindSafe(|| factory())) {
            Ok(Ok(engine)) => {
                if let Ok(mut info) = health.info.lock() {
                    *info = Some(engine.info());
                }
                health.loaded.store(true, Ordering::Release);
                health.alive.store(true, Ordering::Release);
                Some(engine)
            }
            Ok(Err(e)) => {
                health.fail(format!("loading the model failed: {e}"));
                None
            }
            Err(p) => {
                health.fail(format!("loading the model panicked: {}", panic_text(&*p)));
                None
            }
        };
        health.beat();
        Self {
            engine,
            scheduler: Scheduler::new(health.clone()),
            health,
            step_pending: false,
        }
    }

    fn schedule_step(&mut self, ctx: &mut SyncContext<Self>) {
        if !self.step_pending {
            self.step_pending = true;
            ctx.address().do_send(Step);
        }
    }

    fn unavailable(&self) -> EngineError {
        let why = self
            .health
            .failure
            .lock()
            .ok()
            .and_then(|f| f.clone())
            .unwrap_or_else(|| "engine not loaded".to_owned());
        EngineError::Internal(why)
    }
}

impl Handler<Submit> for ModelActor {
    type Result = ();

    fn handle(&mut self, msg: Submit, ctx: &mut SyncContext<Self>) {
        self.scheduler.push(msg.id, msg.request, msg.events);
        if self.engine.is_none() {
            self.scheduler.fail_all(self.unavailable());
            return;
        }
        self.schedule_step(ctx);
    }
}

impl Handler<Cancel> for ModelActor {
    type Result = ();

    fn handle(&mut self, msg: Cancel, ctx: &mut SyncContext<Self>) {
        if let Some(engine) = self.engine.as_deref_mut() {
            self.scheduler.cancel(msg.id, engine);
            self.schedule_step(ctx);
        }
    }
}

impl Handler<Step> for ModelActor {
    type Result = ();

    fn handle(&mut self, _: Step, ctx: &mut SyncContext<Self>) {
        self.step_pending = false;
        let Some(engine) = self.engine.as_deref_mut() else {
            return;
        };
        self.health
            .step_started_ms
            .store(self.health.now_ms() + 1, Ordering::Release);
        let scheduler = &mut self.scheduler;
        let outcome = catch_unwind(AssertUnwindSafe(|| scheduler.step(engine)));
        self.health.step_started_ms.store(0, Ordering::Release);
        self.health.beat();
        match outcome {
            Ok(true) => self.schedule_step(ctx),
            Ok(false) => {}
            Err(p) => {
                // The engine's state is unknown after a panic: never step it again.
                let why = format!("the engine panicked: {}", panic_text(&*p));
                tracing::error!(%why, "model engine failed");
                self.engine = None;
                self.health.fail(why.clone());
                self.scheduler.fail_all(EngineError::Internal(why));
            }
        }
    }
}

impl Handler<CountTokens> for ModelActor {
    type Result = Result<usize, EngineError>;

    fn handle(&mut self, msg: CountTokens, _: &mut SyncContext<Self>) -> Self::Result {
        match self.engine.as_deref_mut() {
            Some(engine) => engine.count_prompt_tokens(&msg.0),
            None => Err(self.unavailable()),
        }
    }
}

impl Handler<RenderPrompt> for ModelActor {
    type Result = Result<String, EngineError>;

    fn handle(&mut self, msg: RenderPrompt, _: &mut SyncContext<Self>) -> Self::Result {
        match self.engine.as_deref_mut() {
            Some(engine) => engine.render_prompt(&msg.0),
            None => Err(self.unavailable()),
        }
    }
}

/// The HTTP side's handle on one running model actor. Cheap to clone.
#[derive(Clone)]
pub struct ModelHandle {
    addr: Addr<ModelActor>,
    health: Arc<EngineHealth>,
    queue_capacity: usize,
    next_id: Arc<AtomicU64>,
}

impl ModelHandle {
    /// Start the model thread; the engine loads there in the background (see `health()`).
    pub fn start(factory: EngineFactory, queue_capacity: usize) -> Self {
        let health = Arc::new(EngineHealth::default());
        let h = health.clone();
        let addr = SyncArbiter::start(1, move || ModelActor::load(&factory, h.clone()));
        Self {
            addr,
            health,
            queue_capacity,
            next_id: Arc::new(AtomicU64::new(1)),
        }
    }

    /// Shared engine state.
    pub fn health(&self) -> &Arc<EngineHealth> {
        &self.health
    }

    /// The actor's address, for messages not wrapped here.
    pub fn addr(&self) -> &Addr<ModelActor> {
        &self.addr
    }

    /// Queue a request without waiting for the model thread.
    pub fn submit(&self, request: GenerateRequest) -> Result<Generation, SubmitError> {
        if self.health.loaded.load(Ordering::Acquire) && !self.health.alive.load(Ordering::Acquire)
        {
            let why = self
                .health
                .snapshot(Duration::MAX)
                .failure
                .unwrap_or_default();
            return Err(SubmitError::Unavailable(why));
        }
        if !self.health.try_reserve(self.queue_capacity) {
            return Err(SubmitError::QueueFull {
                capacity: self.queue_capacity,
            });
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = unbounded_channel();
        let msg = Submit {
            id,
            request,
            events: tx,
        };
        if self.addr.try_send(msg).is_err() {
            self.health.release(1);
            return Err(SubmitError::Unavailable("model thread is gone".to_owned()));
        }
        Ok(Generation {
            id,
            events: rx,
            addr: self.addr.clone(),
            done: false,
        })
    }

    /// Count a prompt's tokens on the model thread.
    pub async fn count_tokens(&self, prompt: Prompt) -> Result<usize, EngineError> {
        self.addr
            .send(CountTokens(prompt))
            .await
            .map_err(|e| EngineError::Internal(e.to_string()))?
    }

    /// Render a prompt on the model thread.
    pub async fn render_prompt(&self, prompt: Prompt) -> Result<String, EngineError> {
        self.addr
            .send(RenderPrompt(prompt))
            .await
            .map_err(|e| EngineError::Internal(e.to_string()))?
    }
}

/// One request's event stream; dropping it before the end cancels the sequence.
pub struct Generation {
    id: SeqId,
    events: UnboundedReceiver<SeqEvent>,
    addr: Addr<ModelActor>,
    done: bool,
}

impl Generation {
    /// Sequence id.
    pub fn id(&self) -> SeqId {
        self.id
    }

    /// The next event; `None` if the model thread went away without finishing the sequence.
    pub async fn next(&mut self) -> Option<SeqEvent> {
        let ev = self.events.recv().await;
        if ev.as_ref().is_none_or(is_terminal) {
            self.done = true;
        }
        ev
    }
}

impl Drop for Generation {
    fn drop(&mut self) {
        if !self.done {
            self.addr.do_send(Cancel { id: self.id });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::SamplingParams;
    use crate::fake::{FakeConfig, FakeEngine};

    fn req(text: &str) -> GenerateRequest {
        GenerateRequest {
            prompt: Prompt::Text(text.to_owned()),
            sampling: SamplingParams::default(),
            max_tokens: None,
            stop: vec![],
            logprobs: None,
        }
    }

    fn drain(rx: &mut UnboundedReceiver<SeqEvent>) -> Vec<SeqEvent> {
        let mut out = Vec::new();
        while let Ok(ev) = rx.try_recv() {
            out.push(ev);
        }
        out
    }

    fn setup() -> (Scheduler, FakeEngine, Arc<EngineHealth>) {
        let health = Arc::new(EngineHealth::default());
        (
            Scheduler::new(health.clone()),
            FakeEngine::new(FakeConfig::default()),
            health,
        )
    }

    #[test]
    fn requests_run_in_fifo_order_one_at_a_time() {
        let (mut s, mut e, health) = setup();
        let (tx1, mut rx1) = unbounded_channel();
        let (tx2, mut rx2) = unbounded_channel();
        assert!(health.try_reserve(2) && health.try_reserve(2));
        s.push(1, req("a b"), tx1);
        s.push(2, req("c"), tx2);
        assert!(s.step(&mut e));
        assert_eq!((s.running(), s.queued()), (1, 1));
        assert_eq!(health.snapshot(Duration::MAX).queued, 1);
        assert!(drain(&mut rx2).is_empty());
        while s.step(&mut e) {}
        let first = drain(&mut rx1);
        let second = drain(&mut rx2);
        assert!(matches!(first.last(), Some(SeqEvent::Finished { .. })));
        assert!(matches!(second.last(), Some(SeqEvent::Finished { .. })));
        assert_eq!(health.snapshot(Duration::MAX).queued, 0);
    }

    #[test]
    fn reservations_stop_at_capacity() {
        let health = EngineHealth::default();
        assert!(health.try_reserve(2));
        assert!(health.try_reserve(2));
        assert!(!health.try_reserve(2));
        health.release(1);
        assert!(health.try_reserve(2));
    }

    #[test]
    fn closed_receiver_cancels_running_sequence_and_next_starts() {
        let (mut s, mut e, health) = setup();
        let (tx1, rx1) = unbounded_channel();
        let (tx2, mut rx2) = unbounded_channel();
        health.try_reserve(9);
        health.try_reserve(9);
        s.push(1, req("a b c d e f g h"), tx1);
        s.push(2, req("x"), tx2);
        s.step(&mut e);
        drop(rx1);
        // One step to observe the cancellation, then the waiting request is admitted.
        s.step(&mut e);
        s.step(&mut e);
        assert_eq!(s.running(), 1);
        assert!(matches!(
            drain(&mut rx2).first(),
            Some(SeqEvent::Started { .. })
        ));
    }

    #[test]
    fn cancel_of_waiting_request_frees_its_place() {
        let (mut s, mut e, health) = setup();
        let (tx, _rx) = unbounded_channel();
        health.try_reserve(1);
        s.push(5, req("a"), tx);
        s.cancel(5, &mut e);
        assert_eq!(s.queued(), 0);
        assert!(health.try_reserve(1));
    }

    #[test]
    fn admission_error_is_sent_to_that_request_only() {
        let (mut s, _, health) = setup();
        let mut e = FakeEngine::new(FakeConfig {
            context_length: 2,
            ..FakeConfig::default()
        });
        let (tx, mut rx) = unbounded_channel();
        health.try_reserve(1);
        s.push(1, req("a b c"), tx);
        assert!(!s.step(&mut e));
        assert!(matches!(
            drain(&mut rx).as_slice(),
            [SeqEvent::Failed(EngineError::ContextLength { .. })]
        ));
    }

    #[test]
    fn fail_all_reaches_waiting_and_running() {
        let (mut s, mut e, _) = setup();
        let (tx1, mut rx1) = unbounded_channel();
        let (tx2, mut rx2) = unbounded_channel();
        s.push(1, req("a b c"), tx1);
        s.push(2, req("d"), tx2);
        s.step(&mut e);
        s.fail_all(EngineError::Internal("gone".into()));
        assert!(matches!(drain(&mut rx1).last(), Some(SeqEvent::Failed(_))));
        assert!(matches!(drain(&mut rx2).last(), Some(SeqEvent::Failed(_))));
    }

    #[test]
    fn wedge_is_reported_only_after_the_timeout() {
        let health = EngineHealth::default();
        health.step_started_ms.store(1, Ordering::Release);
        std::thread::sleep(Duration::from_millis(30));
        assert!(health.snapshot(Duration::from_millis(5)).wedged);
        assert!(!health.snapshot(Duration::from_secs(60)).wedged);
    }
}
