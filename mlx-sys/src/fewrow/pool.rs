//! A pool of worker threads for splitting one product. A decode step runs ~200 products a few
//! microseconds to a few hundred apart; parking and waking a thread through the kernel between
//! each (a futex call each way, costlier still on a VM) was a fifth of the step's CPU time. So a
//! worker that finished a job spins for a short while (`MLX_SERVE_POOL_SPIN_US`, default 100 µs)
//! before it parks, and the caller only makes the wake-up call when a worker really sleeps;
//! likewise the caller spins before it parks waiting for the workers.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::*};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

type Job = &'static (dyn Fn(usize) + Sync);

struct Shared {
    /// Incremented per job so a worker runs each job once; `job` is written before it.
    generation: AtomicU64,
    job: UnsafeCell<Option<Job>>,
    /// Workers still running the current job.
    pending: AtomicUsize,
    /// Workers parked on `wake`, and whether the caller is parked on `done`.
    parked: AtomicUsize,
    caller_parked: AtomicBool,
    lock: Mutex<()>,
    wake: Condvar,
    done: Condvar,
    spin: Duration,
}

// SAFETY: `job` is written only by the caller that owns the pool (`Pool::busy`) while no worker
// reads it (before the generation that publishes it), and read by workers after that generation.
unsafe impl Sync for Shared {}

struct Pool {
    shared: &'static Shared,
    workers: usize,
    /// Serialises callers: one product at a time owns the workers.
    busy: Mutex<()>,
}

static POOL: OnceLock<Pool> = OnceLock::new();
static THREADS: AtomicUsize = AtomicUsize::new(0);

/// Threads a product is split over (the caller plus the workers): `MLX_SERVE_FEWROW_THREADS`,
/// else the available parallelism, at most 8. Read once: the standard library's answer reads
/// the cgroup files on every call.
pub fn threads() -> usize {
    let t = THREADS.load(Relaxed);
    if t != 0 {
        return t;
    }
    let t = std::env::var("MLX_SERVE_FEWROW_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|&t| t >= 1)
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
                .min(8)
        });
    THREADS.store(t, Relaxed);
    t
}

fn lock(m: &Mutex<()>) -> MutexGuard<'_, ()> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn pool() -> &'static Pool {
    POOL.get_or_init(|| {
        let spin_us = std::env::var("MLX_SERVE_POOL_SPIN_US")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(100);
        let shared: &'static Shared = Box::leak(Box::new(Shared {
            generation: AtomicU64::new(0),
            job: UnsafeCell::new(None),
            pending: AtomicUsize::new(0),
            parked: AtomicUsize::new(0),
            caller_parked: AtomicBool::new(false),
            lock: Mutex::new(()),
            wake: Condvar::new(),
            done: Condvar::new(),
            spin: Duration::from_micros(spin_us),
        }));
        let workers = threads() - 1;
        for w in 0..workers {
            std::thread::Builder::new()
                .name(format!("mlx-serve-gemm-{w}"))
                .spawn(move || worker(shared, w + 1))
                .expect("spawn few-row matmul worker");
        }
        Pool {
            shared,
            workers,
            busy: Mutex::new(()),
        }
    })
}

/// Spins until `ready()` or `spin` has passed; whether it became ready.
fn spin_until(spin: Duration, ready: impl Fn() -> bool) -> bool {
    if spin.is_zero() {
        return ready();
    }
    let start = Instant::now();
    loop {
        for _ in 0..64 {
            if ready() {
                return true;
            }
            std::hint::spin_loop();
        }
        if start.elapsed() >= spin {
            return ready();
        }
    }
}

fn worker(shared: &'static Shared, index: usize) {
    let mut seen = 0u64;
    loop {
        let fresh = || shared.generation.load(SeqCst) != seen;
        if !spin_until(shared.spin, fresh) {
            let mut guard = lock(&shared.lock);
            shared.parked.fetch_add(1, SeqCst);
            while !fresh() {
                guard = shared.wake.wait(guard).unwrap_or_else(|e| e.into_inner());
            }
            shared.parked.fetch_sub(1, SeqCst);
        }
        seen = shared.generation.load(SeqCst);
        // SAFETY: the generation just read was published after `job` was written, and the
        // caller does not touch `job` again until every worker has finished (pending = 0).
        if let Some(job) = unsafe { *shared.job.get() } {
            job(index);
        }
        if shared.pending.fetch_sub(1, SeqCst) == 1 && shared.caller_parked.load(SeqCst) {
            let _guard = lock(&shared.lock);
            shared.done.notify_all();
        }
    }
}

/// Runs `job(t)` for `t` in `0..threads`, `0` on the calling thread, and returns when all are
/// done.
pub fn run(threads: usize, job: &(dyn Fn(usize) + Sync)) {
    let pool = pool();
    if pool.workers + 1 < threads {
        for t in 0..threads {
            job(t);
        }
        return;
    }
    let _owner = lock(&pool.busy);
    let shared = pool.shared;
    // SAFETY: the reference is only used until `pending` drops to 0, which this function
    // waits for before returning, so it never outlives `job`.
    let job: Job = unsafe { std::mem::transmute::<&(dyn Fn(usize) + Sync), Job>(job) };
    // SAFETY: no worker reads `job` until the generation below is published (see `Shared`).
    unsafe { *shared.job.get() = Some(job) };
    shared.pending.store(pool.workers, SeqCst);
    shared.generation.fetch_add(1, SeqCst);
    // A worker parks only after counting itself under the lock and seeing no new generation,
    // so either it sees this one or this sees it parked.
    if shared.parked.load(SeqCst) > 0 {
        let _guard = lock(&shared.lock);
        shared.wake.notify_all();
    }
    job(0);
    let finished = || shared.pending.load(SeqCst) == 0;
    if !spin_until(shared.spin, finished) {
        let mut guard = lock(&shared.lock);
        shared.caller_parked.store(true, SeqCst);
        while !finished() {
            guard = shared.done.wait(guard).unwrap_or_else(|e| e.into_inner());
        }
        shared.caller_parked.store(false, SeqCst);
    }
}
