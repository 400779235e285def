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

mod health;
mod scheduler;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use actix::prelude::*;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

pub use health::{EngineHealth, HealthSnapshot};
pub use scheduler::{Policy, Scheduler};

use mlx_serve_engine::engine::{
    completion_budget, Engine, EngineError, GenerateRequest, Prompt, PromptEncoder, SeqEvent, SeqId,
};
use scheduler::is_terminal;

/// Where the model thread publishes its engine's prompt encoder for the front.
type EncoderSlot = Arc<RwLock<Option<Arc<dyn PromptEncoder>>>>;

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
    /// Lower runs sooner (0 by default).
    pub priority: i32,
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

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned())
}

impl ModelActor {
    /// Build the engine with `factory` (on the calling thread) and record the outcome in `health`.
    pub fn load(factory: &EngineFactory, health: Arc<EngineHealth>, policy: Policy) -> Self {
        Self::load_into(factory, health, policy, &EncoderSlot::default())
    }

    /// [`ModelActor::load`], publishing the engine's prompt encoder in `encoder`.
    fn load_into(
        factory: &EngineFactory,
        health: Arc<EngineHealth>,
        policy: Policy,
        encoder: &EncoderSlot,
    ) -> Self {
        let engine = match catch_unwind(AssertUnwindSafe(|| factory())) {
            Ok(Ok(engine)) => {
                if let Ok(mut slot) = encoder.write() {
                    *slot = engine.encoder();
                }
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
            scheduler: Scheduler::with_policy(health.clone(), policy),
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
        self.health.beat();
        self.scheduler
            .push(msg.id, msg.priority, msg.request, msg.events);
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
        self.health.beat();
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
        if outcome.is_ok() {
            if let Ok(mut stats) = self.health.stats.lock() {
                *stats = engine.stats();
            }
        }
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

/// The HTTP side's handle on one running model actor. Cheap to clone.
#[derive(Clone)]
pub struct ModelHandle {
    addr: Addr<ModelActor>,
    health: Arc<EngineHealth>,
    encoder: EncoderSlot,
    queue_capacity: usize,
    next_id: Arc<AtomicU64>,
}

impl ModelHandle {
    /// Start the model thread; the engine loads there in the background (see `health()`).
    pub fn start(factory: EngineFactory, queue_capacity: usize) -> Self {
        Self::start_with(factory, queue_capacity, Policy::Fcfs)
    }

    /// `start` with a scheduling policy.
    pub fn start_with(factory: EngineFactory, queue_capacity: usize, policy: Policy) -> Self {
        let health = Arc::new(EngineHealth::default());
        let encoder = EncoderSlot::default();
        let (h, slot) = (health.clone(), encoder.clone());
        let addr = SyncArbiter::start(1, move || {
            ModelActor::load_into(&factory, h.clone(), policy, &slot)
        });
        Self {
            addr,
            health,
            encoder,
            queue_capacity,
            next_id: Arc::new(AtomicU64::new(1)),
        }
    }

    /// Shared engine state.
    pub fn health(&self) -> &Arc<EngineHealth> {
        &self.health
    }

    /// Queue a request without waiting for the model thread.
    pub fn submit(&self, request: GenerateRequest) -> Result<Generation, SubmitError> {
        self.submit_with_priority(request, 0)
    }

    /// `submit` with a priority: lower runs sooner.
    pub fn submit_with_priority(
        &self,
        request: GenerateRequest,
        priority: i32,
    ) -> Result<Generation, SubmitError> {
        // A failed engine (load error or panic) answers at once; a loading one queues requests.
        if !self.health.alive.load(Ordering::Acquire) {
            if let Some(why) = self.health.snapshot(Duration::MAX).failure {
                return Err(SubmitError::Unavailable(why));
            }
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
            priority,
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

    /// The loaded engine's prompt encoder, if it has one.
    fn encoder(&self) -> Option<Arc<dyn PromptEncoder>> {
        self.encoder.read().ok()?.clone()
    }

    /// Render and tokenize the request's prompt off the model thread (on the blocking pool) and
    /// refuse it here, before it takes a queue place, when it cannot fit the context. Without an
    /// encoder (an engine that has none, or one still loading) the engine does both on admission.
    pub async fn prepare(&self, request: &mut GenerateRequest) -> Result<(), EngineError> {
        let Some(encoder) = self.encoder().filter(|_| request.encoded.is_none()) else {
            return Ok(());
        };
        let context_length = encoder.context_length();
        let prompt = request.prompt.clone();
        let encoded = tokio::task::spawn_blocking(move || encoder.encode(&prompt))
            .await
            .map_err(|e| EngineError::Internal(format!("encoding the prompt: {e}")))??;
        completion_budget(context_length, encoded.tokens.len(), request.max_tokens)?;
        request.encoded = Some(Arc::new(encoded));
        Ok(())
    }

    /// Count a prompt's tokens: with the engine's encoder off the model thread (so never behind
    /// a generation step), else on the model thread.
    pub async fn count_tokens(&self, prompt: Prompt) -> Result<usize, EngineError> {
        if let Some(encoder) = self.encoder() {
            return tokio::task::spawn_blocking(move || encoder.encode(&prompt))
                .await
                .map_err(|e| EngineError::Internal(format!("counting tokens: {e}")))?
                .map(|e| e.tokens.len());
        }
        self.addr
            .send(CountTokens(prompt))
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
