//! The table's decisions on fake residents, then the registry over real `ModelActor`s running
//! the fake engine.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use mlx_serve_engine::engine::{Engine, EngineError, GenerateRequest, Prompt, SeqEvent};
use mlx_serve_engine::fake::{FakeConfig, FakeEngine};

const MB: u64 = 1 << 20;

#[derive(Clone)]
struct Fake {
    phase: Rc<Cell<u8>>,
    bytes: u64,
}

impl Fake {
    fn ready(bytes: u64) -> Self {
        Self {
            phase: Rc::new(Cell::new(1)),
            bytes,
        }
    }
    fn loading() -> Self {
        Self {
            phase: Rc::new(Cell::new(0)),
            bytes: 0,
        }
    }
}

impl Resident for Fake {
    fn phase(&self) -> Phase {
        match self.phase.get() {
            0 => Phase::Loading,
            1 => Phase::Ready,
            _ => Phase::Failed("broken".into()),
        }
    }
    fn weight_bytes(&self) -> Option<u64> {
        (self.phase.get() == 1).then_some(self.bytes)
    }
}

fn config(id: &str, keep_alive: Option<Duration>) -> SlotConfig {
    SlotConfig {
        id: id.into(),
        keep_alive,
        kv_reserve_bytes: 10 * MB,
        estimated_weight_bytes: 100 * MB,
    }
}

fn table(ids: &[&str], limits: Limits) -> (Table<Fake>, Instant) {
    let now = Instant::now();
    let configs = ids.iter().map(|id| config(id, None)).collect();
    (Table::new(configs, limits, now), now)
}

fn models(n: usize) -> Limits {
    Limits {
        max_models: n,
        max_bytes: 0,
    }
}

#[test]
fn a_model_that_fits_loads_without_unloading_anything() {
    let (mut t, now) = table(&["a", "b"], models(2));
    assert_eq!(t.plan(0), Admission::Load { evict: vec![] });
    t.install(0, Fake::ready(MB), now);
    assert_eq!(t.plan(0), Admission::Resident);
    assert_eq!(t.plan(1), Admission::Load { evict: vec![] });
}

#[test]
fn the_least_recently_used_idle_model_is_unloaded_for_room() {
    let (mut t, now) = table(&["a", "b", "c"], models(2));
    t.install(0, Fake::ready(MB), now);
    t.install(1, Fake::ready(MB), now);
    let g = t.enter(0);
    t.leave(0, g, None, now + Duration::from_secs(5));
    // b was last used at `now`, a five seconds later: b goes.
    assert_eq!(t.plan(2), Admission::Load { evict: vec![1] });
}

#[test]
fn busy_and_loading_models_are_never_unloaded_for_room() {
    let (mut t, now) = table(&["a", "b", "c"], models(2));
    t.install(0, Fake::ready(MB), now);
    t.install(1, Fake::loading(), now);
    t.enter(0);
    assert_eq!(t.plan(2), Admission::Wait);
}

#[test]
fn the_byte_budget_counts_weights_plus_kv_reserve() {
    let limits = Limits {
        max_models: 0,
        max_bytes: 250 * MB,
    };
    let (mut t, now) = table(&["a", "b", "c"], limits);
    t.install(0, Fake::ready(100 * MB), now);
    // 110 resident + 110 estimated fits 250.
    assert_eq!(t.plan(1), Admission::Load { evict: vec![] });
    t.install(1, Fake::ready(100 * MB), now + Duration::from_secs(1));
    // A third would make 330: the older idle one (a) goes.
    assert_eq!(t.plan(2), Admission::Load { evict: vec![0] });
}

#[test]
fn a_model_larger_than_the_budget_loads_when_nothing_else_is_resident() {
    let limits = Limits {
        max_models: 0,
        max_bytes: 50 * MB,
    };
    let (mut t, now) = table(&["a", "b"], limits);
    assert_eq!(t.plan(0), Admission::Load { evict: vec![] });
    t.install(0, Fake::ready(100 * MB), now);
    assert_eq!(t.plan(1), Admission::Load { evict: vec![0] });
}

#[test]
fn failed_models_hold_no_room() {
    let (mut t, now) = table(&["a", "b"], models(1));
    let broken = Fake::ready(MB);
    broken.phase.set(2);
    t.install(0, broken, now);
    assert_eq!(t.plan(1), Admission::Load { evict: vec![] });
}

#[test]
fn keep_alive_expires_only_idle_models() {
    let now = Instant::now();
    let configs = vec![
        config("a", Some(Duration::from_secs(10))),
        config("b", None),
    ];
    let mut t: Table<Fake> = Table::new(configs, models(0), now);
    t.install(0, Fake::ready(MB), now);
    t.install(1, Fake::ready(MB), now);
    let later = now + Duration::from_secs(11);
    assert_eq!(t.expired(later), vec![0]);
    t.enter(0);
    assert!(t.expired(later).is_empty(), "a busy model is not expired");
}

#[test]
fn a_request_keep_alive_overrides_the_model_default_and_zero_unloads() {
    let (mut t, now) = table(&["a"], models(0));
    t.install(0, Fake::ready(MB), now);
    let g = t.enter(0);
    let g2 = t.enter(0);
    // Another request still runs: not yet.
    assert!(!t.leave(0, g, Some(Some(Duration::ZERO)), now));
    assert!(t.leave(0, g2, Some(Some(Duration::ZERO)), now));
    let g = {
        t.unload(0, now);
        t.install(0, Fake::ready(MB), now);
        t.enter(0)
    };
    assert!(!t.leave(0, g, Some(Some(Duration::from_secs(3))), now));
    assert_eq!(t.expired(now + Duration::from_secs(4)), vec![0]);
}

#[test]
fn a_lease_from_an_earlier_load_does_not_touch_the_next() {
    let (mut t, now) = table(&["a"], models(0));
    t.install(0, Fake::ready(MB), now);
    let old = t.enter(0);
    t.unload(0, now);
    t.install(0, Fake::ready(MB), now);
    let fresh = t.enter(0);
    assert!(!t.leave(0, old, Some(Some(Duration::ZERO)), now));
    assert_eq!(t.slots[0].active, 1);
    assert!(t.leave(0, fresh, Some(Some(Duration::ZERO)), now));
}

// ---- The registry over real model actors (fake engine) ----

fn spec(id: &str, loads: Arc<AtomicUsize>, keep_alive: Option<Duration>) -> ModelSpec {
    let model_id = id.to_owned();
    ModelSpec {
        config: SlotConfig {
            id: id.into(),
            keep_alive,
            kv_reserve_bytes: 0,
            estimated_weight_bytes: 0,
        },
        factory: Arc::new(move || {
            loads.fetch_add(1, Ordering::SeqCst);
            // A load that takes a moment, so concurrent first requests overlap with it.
            std::thread::sleep(Duration::from_millis(50));
            Ok(Box::new(FakeEngine::new(FakeConfig {
                model_id: model_id.clone(),
                ..FakeConfig::default()
            })) as Box<dyn Engine>)
        }),
        queue_capacity: 8,
        policy: Default::default(),
    }
}

async fn reply(lease: &Lease, text: &str) -> String {
    let request = GenerateRequest {
        prompt: Prompt::Text(text.into()),
        sampling: Default::default(),
        max_tokens: Some(8),
        stop: vec![],
        logprobs: None,
        constraint: None,
        reasoning: None,
        encoded: None,
    };
    let mut g = lease.handle().submit(request).expect("queued");
    let mut out = String::new();
    while let Some(ev) = g.next().await {
        match ev {
            SeqEvent::Text { text, .. } => out.push_str(&text),
            SeqEvent::Finished { .. } => break,
            SeqEvent::Failed(e) => panic!("{e}"),
            SeqEvent::Started { .. } => {}
        }
    }
    out
}

fn state_of(r: &ModelRegistry, id: &str) -> ModelState {
    r.status(Duration::MAX)
        .into_iter()
        .find(|s| s.id == id)
        .map(|s| s.state)
        .expect("configured")
}

const WAIT: Duration = Duration::from_secs(5);

#[actix::test]
async fn concurrent_first_requests_load_a_model_once() {
    let loads = Arc::new(AtomicUsize::new(0));
    let r = ModelRegistry::new(vec![spec("a", loads.clone(), None)], models(0), None);
    let (x, y) = futures_util::join!(r.acquire("a", WAIT), r.acquire("a", WAIT));
    let (x, y) = (x.expect("lease"), y.expect("lease"));
    assert_eq!(reply(&x, "one").await, "one");
    assert_eq!(reply(&y, "two").await, "two");
    assert_eq!(loads.load(Ordering::SeqCst), 1);
    assert_eq!(state_of(&r, "a"), ModelState::Ready);
}

#[actix::test]
async fn one_resident_model_at_a_time_unloads_and_reloads() {
    let (la, lb) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let r = ModelRegistry::new(
        vec![spec("a", la.clone(), None), spec("b", lb.clone(), None)],
        models(1),
        None,
    );
    for round in 0..2 {
        let a = r.acquire("a", WAIT).await.expect("a");
        assert_eq!(reply(&a, "from a").await, "from a");
        drop(a);
        let b = r.acquire("b", WAIT).await.expect("b");
        assert_eq!(state_of(&r, "a"), ModelState::Unloaded, "round {round}");
        assert_eq!(reply(&b, "from b").await, "from b");
    }
    assert_eq!(
        (la.load(Ordering::SeqCst), lb.load(Ordering::SeqCst)),
        (2, 2)
    );
    let status = r.status(Duration::MAX);
    assert_eq!((status[0].loads, status[0].unloads), (2, 2));
}

#[actix::test]
async fn a_request_for_a_full_budget_waits_for_the_busy_model_to_finish() {
    let n = Arc::new(AtomicUsize::new(0));
    let r = ModelRegistry::new(
        vec![spec("a", n.clone(), None), spec("b", n.clone(), None)],
        models(1),
        None,
    );
    let a = r.acquire("a", WAIT).await.expect("a");
    let refused = r.acquire("b", Duration::from_millis(100)).await;
    assert!(matches!(refused, Err(AcquireError::Busy { .. })));
    let r2 = r.clone();
    let waiter = actix::spawn(async move { r2.acquire("b", WAIT).await.map(|_| ()) });
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(a);
    waiter.await.expect("joined").expect("b after a finished");
}

#[actix::test]
async fn keep_alive_zero_unloads_after_the_request_and_the_engine_is_released() {
    let released = Arc::new(AtomicUsize::new(0));
    let hook_count = released.clone();
    let hook: ReleaseHook = Arc::new(move || {
        hook_count.fetch_add(1, Ordering::SeqCst);
    });
    let n = Arc::new(AtomicUsize::new(0));
    let r = ModelRegistry::new(vec![spec("a", n, None)], models(0), Some(hook));
    let mut a = r.acquire("a", WAIT).await.expect("a");
    assert_eq!(reply(&a, "hi").await, "hi");
    a.set_keep_alive(Some(Duration::ZERO));
    drop(a);
    assert_eq!(state_of(&r, "a"), ModelState::Unloaded);
    // The model thread ends once its mailbox closes; the sweeper then runs the hook.
    let deadline = Instant::now() + WAIT;
    while released.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "engine never released");
        tokio::time::sleep(Duration::from_millis(20)).await;
        r.sweep();
    }
    assert_eq!(r.draining(), 0);
}

#[actix::test]
async fn keep_alive_expiry_unloads_an_idle_model() {
    let n = Arc::new(AtomicUsize::new(0));
    let r = ModelRegistry::new(
        vec![spec("a", n, Some(Duration::from_millis(200)))],
        models(0),
        None,
    );
    let a = r.acquire("a", WAIT).await.expect("a");
    assert_eq!(reply(&a, "hi").await, "hi");
    drop(a);
    r.sweep();
    assert_eq!(state_of(&r, "a"), ModelState::Ready);
    tokio::time::sleep(Duration::from_millis(250)).await;
    r.sweep();
    assert_eq!(state_of(&r, "a"), ModelState::Unloaded);
}

#[actix::test]
async fn a_model_that_fails_to_load_fails_only_its_own_requests() {
    let n = Arc::new(AtomicUsize::new(0));
    let broken = ModelSpec {
        config: config("broken", None),
        factory: Arc::new(|| Err(EngineError::Internal("bad magic in model.gguf".into()))),
        queue_capacity: 4,
        policy: Default::default(),
    };
    let r = ModelRegistry::new(vec![broken, spec("good", n, None)], models(0), None);
    r.load("broken").expect("load starts");
    let deadline = Instant::now() + WAIT;
    while state_of(&r, "broken") != ModelState::Failed {
        assert!(Instant::now() < deadline, "never failed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    match r.acquire("broken", WAIT).await {
        Err(AcquireError::Failed { reason, .. }) => {
            assert!(reason.contains("bad magic"), "{reason}")
        }
        Err(e) => panic!("unexpected {e}"),
        Ok(_) => panic!("a broken model gave a lease"),
    }
    let good = r.acquire("good", WAIT).await.expect("good");
    assert_eq!(reply(&good, "fine").await, "fine");
    assert!(matches!(
        r.acquire("nope", WAIT).await,
        Err(AcquireError::Unknown(_))
    ));
}

#[actix::test]
async fn unload_and_load_by_hand() {
    let n = Arc::new(AtomicUsize::new(0));
    let r = ModelRegistry::new(vec![spec("a", n.clone(), None)], models(0), None);
    assert!(r.load("a").expect("known"));
    assert!(!r.load("a").expect("known"), "already resident");
    assert!(r.unload("a").expect("known"));
    assert!(!r.unload("a").expect("known"), "already unloaded");
    assert_eq!(state_of(&r, "a"), ModelState::Unloaded);
    let a = r.acquire("a", WAIT).await.expect("a");
    assert_eq!(reply(&a, "back").await, "back");
    assert_eq!(n.load(Ordering::SeqCst), 2);
}
