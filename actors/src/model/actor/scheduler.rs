//! The one owner of every sequence's place: waiting (here, in priority then arrival order),
//! running (inside the engine, which holds their state and runs the steps) and paused (here,
//! holding the engine state [`Engine::pause`] handed over). Queue depth, running count and
//! `/health` come from it; [`EngineHealth::try_reserve`] is the ticket an HTTP handler takes for a
//! place in its queue before the request reaches the model thread.
//!
//! Admission is by priority (lower runs sooner, vLLM's meaning), then arrival; paused sequences
//! come before waiting ones of the same priority. Under [`Policy::Priority`], a waiting request
//! that outranks the lowest-priority running sequence while every slot is busy pauses that
//! sequence.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::mpsc::UnboundedSender;

use super::health::EngineHealth;
use mlx_serve_engine::engine::{Engine, EngineError, GenerateRequest, PausedSeq, SeqEvent, SeqId};

struct Waiting {
    id: SeqId,
    priority: i32,
    request: GenerateRequest,
    events: UnboundedSender<SeqEvent>,
}

struct Admitted {
    priority: i32,
    events: UnboundedSender<SeqEvent>,
}

struct Paused {
    priority: i32,
    events: UnboundedSender<SeqEvent>,
    seq: PausedSeq,
    /// Cancelled while paused: it resumes first, only to report its end (its KV then goes to
    /// the prefix cache like any cancelled sequence's).
    cancelled: bool,
}

/// What to admit next.
#[derive(Clone, Copy)]
enum Next {
    Paused(usize),
    Waiting(usize),
}

/// What happens when a request outranks running ones and no slot is free.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    /// It waits for a slot (first come, first served among equal priorities).
    #[default]
    Fcfs,
    /// It pauses the lowest-priority running sequence.
    Priority,
}

/// Every sequence's place, plus the routing of engine events to requests.
pub struct Scheduler {
    queue: VecDeque<Waiting>,
    running: HashMap<SeqId, Admitted>,
    /// Oldest pause first.
    paused: Vec<Paused>,
    health: Arc<EngineHealth>,
    policy: Policy,
}

pub(super) fn is_terminal(ev: &SeqEvent) -> bool {
    matches!(ev, SeqEvent::Finished { .. } | SeqEvent::Failed(_))
}

impl Scheduler {
    /// An empty scheduler publishing its counts to `health` (whose `queued` counts reservations).
    pub fn new(health: Arc<EngineHealth>) -> Self {
        Self::with_policy(health, Policy::Fcfs)
    }

    pub fn with_policy(health: Arc<EngineHealth>, policy: Policy) -> Self {
        Self {
            queue: VecDeque::new(),
            running: HashMap::new(),
            paused: Vec::new(),
            health,
            policy,
        }
    }

    /// Append a request whose queue place was reserved with [`EngineHealth::try_reserve`].
    pub fn push(
        &mut self,
        id: SeqId,
        priority: i32,
        request: GenerateRequest,
        events: UnboundedSender<SeqEvent>,
    ) {
        self.queue.push_back(Waiting {
            id,
            priority,
            request,
            events,
        });
    }

    /// The sequence to admit next: a cancelled paused one (to report its end), else the best
    /// priority, paused before waiting, then the earliest.
    fn next(&self) -> Option<Next> {
        let paused = (0..self.paused.len())
            .min_by_key(|&i| (!self.paused[i].cancelled, self.paused[i].priority, i))
            .map(|i| {
                (
                    (!self.paused[i].cancelled, self.paused[i].priority, 0),
                    Next::Paused(i),
                )
            });
        let waiting = (0..self.queue.len())
            .min_by_key(|&i| (self.queue[i].priority, i))
            .map(|i| ((true, self.queue[i].priority, 1), Next::Waiting(i)));
        match (paused, waiting) {
            (Some(p), Some(w)) => Some(if p.0 <= w.0 { p.1 } else { w.1 }),
            (p, w) => p.or(w).map(|(_, n)| n),
        }
    }

    /// Drop a waiting request or stop a running or paused one.
    pub fn cancel(&mut self, id: SeqId, engine: &mut dyn Engine) {
        let before = self.queue.len();
        self.queue.retain(|w| w.id != id);
        self.health.release(before - self.queue.len());
        if self.running.contains_key(&id) {
            engine.cancel(id);
        }
        for p in self.paused.iter_mut().filter(|p| p.seq.id() == id) {
            p.cancelled = true;
        }
    }

    /// Requests waiting for the engine.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Sequences admitted: inside the engine or paused.
    pub fn running(&self) -> usize {
        self.running.len() + self.paused.len()
    }

    /// Admitted sequences paused for higher-priority ones.
    pub fn paused(&self) -> usize {
        self.paused.len()
    }

    /// Cancel sequences whose client went away; forget waiting ones.
    fn reap_closed(&mut self, engine: &mut dyn Engine) {
        let before = self.queue.len();
        self.queue.retain(|w| !w.events.is_closed());
        self.health.release(before - self.queue.len());
        for (id, a) in &self.running {
            if a.events.is_closed() {
                engine.cancel(*id);
            }
        }
        for p in self.paused.iter_mut().filter(|p| p.events.is_closed()) {
            p.cancelled = true;
        }
    }

    fn admit(&mut self, engine: &mut dyn Engine) {
        while let Some(next) = self.next() {
            if engine.free_slots() == 0 {
                if let Next::Waiting(i) = next {
                    if self.preempt_for(i, engine) {
                        continue;
                    }
                }
                break;
            }
            match next {
                Next::Paused(i) => {
                    let p = self.paused.remove(i);
                    let id = p.seq.id();
                    match engine.resume(p.seq) {
                        Ok(()) => {
                            self.admitted(id, p.priority, p.events);
                            if p.cancelled {
                                engine.cancel(id);
                            }
                        }
                        Err(e) => {
                            let _ = p.events.send(SeqEvent::Failed(e));
                        }
                    }
                }
                Next::Waiting(i) => {
                    let Some(w) = self.queue.remove(i) else {
                        break;
                    };
                    self.health.release(1);
                    match engine.add(w.id, w.request) {
                        Ok(()) => self.admitted(w.id, w.priority, w.events),
                        Err(e) => {
                            let _ = w.events.send(SeqEvent::Failed(e));
                        }
                    }
                }
            }
        }
    }

    fn admitted(&mut self, id: SeqId, priority: i32, events: UnboundedSender<SeqEvent>) {
        self.running.insert(id, Admitted { priority, events });
    }

    /// Under the priority policy, frees a slot for waiting request `i` by pausing the running
    /// sequence of the worst priority (the latest of equals) when `i` outranks it. True when a
    /// slot was freed (the paused sequence then ranks below `i`, so `i` takes it).
    fn preempt_for(&mut self, i: usize, engine: &mut dyn Engine) -> bool {
        if self.policy != Policy::Priority {
            return false;
        }
        let wanted = self.queue[i].priority;
        let Some(victim) = self
            .running
            .iter()
            .filter(|(_, a)| a.priority > wanted)
            .max_by_key(|(id, a)| (a.priority, **id))
            .map(|(id, _)| *id)
        else {
            return false;
        };
        let Some(seq) = engine.pause(victim) else {
            return false;
        };
        let Some(a) = self.running.remove(&victim) else {
            return false;
        };
        self.paused.push(Paused {
            priority: a.priority,
            events: a.events,
            seq,
            cancelled: false,
        });
        true
    }

    /// Admit what fits, run one engine step, route its events. True while work remains.
    pub fn step(&mut self, engine: &mut dyn Engine) -> bool {
        self.reap_closed(engine);
        self.admit(engine);
        if engine.has_work() {
            self.health.set_step_weight(engine.step_weight());
            for (id, ev) in engine.step() {
                let done = is_terminal(&ev);
                if let Some(a) = self.running.get(&id) {
                    if a.events.send(ev).is_err() && !done {
                        engine.cancel(id);
                    }
                }
                if done {
                    self.running.remove(&id);
                }
            }
        }
        self.health.running.store(self.running(), Ordering::Release);
        engine.has_work()
            || ((!self.queue.is_empty() || !self.paused.is_empty()) && engine.free_slots() > 0)
    }

    /// Fail every waiting, running and paused request (engine lost).
    pub fn fail_all(&mut self, error: EngineError) {
        for w in self.queue.drain(..) {
            self.health.release(1);
            let _ = w.events.send(SeqEvent::Failed(error.clone()));
        }
        for (_, a) in self.running.drain() {
            let _ = a.events.send(SeqEvent::Failed(error.clone()));
        }
        for p in self.paused.drain(..) {
            let _ = p.events.send(SeqEvent::Failed(error.clone()));
        }
        self.health.running.store(0, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mlx_serve_engine::engine::Prompt;
    use mlx_serve_engine::engine::SamplingParams;
    use mlx_serve_engine::fake::{FakeConfig, FakeEngine};
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
            reasoning: None,
            encoded: None,
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
        s.push(1, 0, req("a b"), tx1);
        s.push(2, 0, req("c"), tx2);
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

    fn text_of(events: &[SeqEvent]) -> String {
        events
            .iter()
            .filter_map(|e| match e {
                SeqEvent::Text { text, .. } => Some(text.as_str()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_better_priority_is_admitted_first_then_arrival_order() {
        let (mut s, mut e, health) = setup();
        let mut rxs = Vec::new();
        // 1 runs; then 2 (priority 5), 3 (priority -1) and 4 (priority -1) wait.
        for (id, priority) in [(1, 0), (2, 5), (3, -1), (4, -1)] {
            let (tx, rx) = unbounded_channel();
            assert!(health.try_reserve(9));
            s.push(id, priority, req("a b c"), tx);
            rxs.push(rx);
            if id == 1 {
                s.step(&mut e);
            }
        }
        let mut started = Vec::new();
        loop {
            let more = s.step(&mut e);
            for (i, rx) in rxs.iter_mut().enumerate() {
                if drain(rx)
                    .iter()
                    .any(|ev| matches!(ev, SeqEvent::Started { .. }))
                {
                    started.push(i + 1);
                }
            }
            if !more {
                break;
            }
        }
        assert_eq!(started, vec![1, 3, 4, 2]);
    }

    #[test]
    fn first_come_first_served_never_pauses_a_running_sequence() {
        let (mut s, mut e, health) = setup();
        let (tx1, mut rx1) = unbounded_channel();
        let (tx2, mut rx2) = unbounded_channel();
        health.try_reserve(9);
        health.try_reserve(9);
        s.push(1, 10, req("a b c d e f"), tx1);
        s.step(&mut e);
        s.push(2, -10, req("x"), tx2);
        s.step(&mut e);
        assert!(
            drain(&mut rx2).is_empty(),
            "the newcomer ran before a slot freed"
        );
        while s.step(&mut e) {}
        assert!(matches!(
            drain(&mut rx1).last(),
            Some(SeqEvent::Finished { .. })
        ));
        assert!(matches!(
            drain(&mut rx2).last(),
            Some(SeqEvent::Finished { .. })
        ));
    }

    #[test]
    fn priority_policy_pauses_the_worst_running_sequence_and_resumes_it_unchanged() {
        let health = Arc::new(EngineHealth::default());
        let alone = {
            let mut s = Scheduler::new(health.clone());
            let mut e = FakeEngine::new(FakeConfig::default());
            let (tx, mut rx) = unbounded_channel();
            health.try_reserve(9);
            s.push(1, 0, req("a b c d e f g h"), tx);
            while s.step(&mut e) {}
            text_of(&drain(&mut rx))
        };
        let mut s = Scheduler::with_policy(health.clone(), Policy::Priority);
        let mut e = FakeEngine::new(FakeConfig::default());
        let (tx1, mut rx1) = unbounded_channel();
        let (tx2, mut rx2) = unbounded_channel();
        let (tx3, mut rx3) = unbounded_channel();
        for _ in 0..3 {
            health.try_reserve(9);
        }
        s.push(1, 5, req("a b c d e f g h"), tx1);
        s.step(&mut e);
        s.step(&mut e);
        let mut first = drain(&mut rx1);
        // Same priority as the runner: waits. Better priority: pauses it.
        s.push(3, 5, req("z"), tx3);
        s.push(2, 0, req("x"), tx2);
        s.step(&mut e);
        assert_eq!(
            s.running(),
            2,
            "the newcomer was not admitted by preemption"
        );
        assert_eq!(health.snapshot(Duration::MAX).queued, 1);
        let mut order = Vec::new();
        loop {
            let more = s.step(&mut e);
            for (id, rx) in [(1, &mut rx1), (2, &mut rx2), (3, &mut rx3)] {
                let events = drain(rx);
                if events
                    .iter()
                    .any(|ev| matches!(ev, SeqEvent::Finished { .. }))
                {
                    order.push(id);
                }
                if id == 1 {
                    first.extend(events);
                }
            }
            if !more {
                break;
            }
        }
        assert_eq!(order, vec![2, 1, 3]);
        assert_eq!(
            text_of(&first),
            alone,
            "the paused sequence's output changed"
        );
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
        s.push(1, 0, req("a b c d e f g h"), tx1);
        s.push(2, 0, req("x"), tx2);
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
        s.push(5, 0, req("a"), tx);
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
        s.push(1, 0, req("a b c"), tx);
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
        s.push(1, 0, req("a b c"), tx1);
        s.push(2, 0, req("d"), tx2);
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

    #[test]
    fn a_heavy_step_is_allowed_its_weight_times_the_timeout() {
        let health = EngineHealth::default();
        health.step_started_ms.store(1, Ordering::Release);
        std::thread::sleep(Duration::from_millis(30));
        health.set_step_weight(20.0);
        assert!(!health.snapshot(Duration::from_millis(5)).wedged);
        health.set_step_weight(2.0);
        assert!(health.snapshot(Duration::from_millis(5)).wedged);
        // Nonsense weights fall back to 1.
        health.set_step_weight(f64::NAN);
        assert!(health.snapshot(Duration::from_millis(5)).wedged);
    }
}
