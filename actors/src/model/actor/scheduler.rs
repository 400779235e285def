//! The FIFO queue in front of the engine and the routing of engine events to requests.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::mpsc::UnboundedSender;

use super::health::EngineHealth;
use crate::engine::{Engine, EngineError, GenerateRequest, SeqEvent, SeqId};

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

pub(super) fn is_terminal(ev: &SeqEvent) -> bool {
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
#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Prompt;
    use crate::engine::SamplingParams;
    use crate::fake::{FakeConfig, FakeEngine};
    use std::time::Duration;
    use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

    fn req(text: &str) -> GenerateRequest {
        GenerateRequest {
            prompt: Prompt::Text(text.to_owned()),
            sampling: SamplingParams::default(),
            max_tokens: None,
            stop: vec![],
            logprobs: None,
            constraint: None,
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
