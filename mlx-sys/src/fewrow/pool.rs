//! A pool of parked worker threads for splitting one product. Waking a parked thread costs a few
//! microseconds, which a decode step's ~200 products afford; spawning one per product would not.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, OnceLock};

type Job = &'static (dyn Fn(usize) + Sync);

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    done: Condvar,
}

struct State {
    /// Incremented per job so a worker runs each job once.
    generation: u64,
    job: Option<Job>,
    /// Workers still running the current job.
    pending: usize,
}

struct Pool {
    shared: &'static Shared,
    workers: usize,
    /// Serialises callers: one product at a time owns the workers.
    busy: Mutex<()>,
}

static POOL: OnceLock<Pool> = OnceLock::new();
static THREADS: AtomicUsize = AtomicUsize::new(0);

/// Threads a product is split over (the caller plus the workers): `MLX_SERVE_FEWROW_THREADS`,
/// else the available parallelism, at most 8.
pub fn threads() -> usize {
    let t = THREADS.load(Ordering::Relaxed);
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
    THREADS.store(t, Ordering::Relaxed);
    t
}

fn pool() -> &'static Pool {
    POOL.get_or_init(|| {
        let shared: &'static Shared = Box::leak(Box::new(Shared {
            state: Mutex::new(State {
                generation: 0,
                job: None,
                pending: 0,
            }),
            wake: Condvar::new(),
            done: Condvar::new(),
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

fn worker(shared: &'static Shared, index: usize) {
    let mut seen = 0u64;
    loop {
        let job = {
            let mut state = shared.state.lock().unwrap_or_else(|e| e.into_inner());
            while state.generation == seen {
                state = shared.wake.wait(state).unwrap_or_else(|e| e.into_inner());
            }
            seen = state.generation;
            state.job
        };
        if let Some(job) = job {
            job(index);
        }
        let mut state = shared.state.lock().unwrap_or_else(|e| e.into_inner());
        state.pending -= 1;
        if state.pending == 0 {
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
    let _owner = pool.busy.lock().unwrap_or_else(|e| e.into_inner());
    // SAFETY: the reference is only used until `pending` drops to 0, which this function
    // waits for before returning, so it never outlives `job`.
    let job: Job = unsafe { std::mem::transmute::<&(dyn Fn(usize) + Sync), Job>(job) };
    {
        let mut state = pool.shared.state.lock().unwrap_or_else(|e| e.into_inner());
        state.job = Some(job);
        state.pending = pool.workers;
        state.generation += 1;
        pool.shared.wake.notify_all();
    }
    job(0);
    let mut state = pool.shared.state.lock().unwrap_or_else(|e| e.into_inner());
    while state.pending > 0 {
        state = pool
            .shared
            .done
            .wait(state)
            .unwrap_or_else(|e| e.into_inner());
    }
    state.job = None;
}
