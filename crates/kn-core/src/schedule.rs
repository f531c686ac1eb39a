//! Independent attribution passes run concurrently.
//!
//! One pass (a layer group's forward and backward over a batch of quadrature points) alternates
//! matrix products with element-wise work, autodiff bookkeeping and copies. Run one at a time
//! with multi-threaded products, the pool idles through everything that is not a product (about
//! a fifth of the time on a 2-core CPU). Here as many passes as rayon's pool has threads run at
//! once, longest first, each on a scoped thread of its own that splits its products over the
//! pool, so one pass's element-wise work overlaps another's products.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Mutex, TryLockError};

/// One backward pass at a time.
static BACKWARD: Mutex<()> = Mutex::new(());

/// Runs `f`, an autodiff backward pass, while no other pass runs one. burn-autodiff's cleanup
/// after a backward pass locks every live graph in turn, so a thread finishing its backward
/// would otherwise wait out another pass's whole backward (seconds, with a core idle).
pub(crate) fn exclusive_backward<R>(f: impl FnOnce() -> R) -> R {
    let guard = if rayon::current_thread_index().is_none() {
        // Off the pool, block: the holder's products run on the pool meanwhile.
        BACKWARD.lock().unwrap_or_else(|p| p.into_inner())
    } else {
        // A pool thread (a pass run one after another from inside the pool) must not block:
        // the holder's products may need this very thread. It runs pool work while it waits.
        loop {
            match BACKWARD.try_lock() {
                Ok(g) => break g,
                Err(TryLockError::Poisoned(p)) => break p.into_inner(),
                Err(TryLockError::WouldBlock) => {
                    if rayon::yield_now() != Some(rayon::Yield::Executed) {
                        std::thread::yield_now();
                    }
                }
            }
        }
    };
    let r = f();
    drop(guard);
    r
}

/// Runs `job(i)` for every index in `order` (a permutation of `0..order.len()`), taking them in
/// that order: with `concurrent`, as many at once as rayon's pool has threads, else one after
/// another on the calling thread; calls `done(i, &result)` on the calling thread as each
/// finishes. After the first error no new job starts and that error is returned.
/// Results are returned indexed by job, whatever the order they finished in.
///
/// Concurrent passes run on as many scoped threads as rayon's pool has threads; the calling
/// thread waits and reports.
pub(crate) fn run_passes<T: Send, E: Send>(
    order: &[usize],
    concurrent: bool,
    job: impl Fn(usize) -> Result<T, E> + Sync,
    done: &mut dyn FnMut(usize, &T),
) -> Result<Vec<T>, E> {
    let n = order.len();
    if !concurrent || rayon::current_num_threads() < 2 || n < 2 {
        // One after another on the calling thread.
        let mut results: Vec<Option<T>> = (0..n).map(|_| None).collect();
        for &i in order {
            let v = job(i)?;
            done(i, &v);
            if let Some(slot) = results.get_mut(i) {
                *slot = Some(v);
            }
        }
        return Ok(results.into_iter().flatten().collect());
    }
    let mut results: Vec<Option<T>> = (0..n).map(|_| None).collect();
    let mut first_err = None;
    let mut receive = |(i, result): (usize, Result<T, E>)| match result {
        Ok(v) => {
            done(i, &v);
            if let Some(slot) = results.get_mut(i) {
                *slot = Some(v);
            }
        }
        Err(e) => {
            if first_err.is_none() {
                first_err = Some(e);
            }
        }
    };
    let workers = rayon::current_num_threads().clamp(1, n.max(1));
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let (tx, rx) = mpsc::channel::<(usize, Result<T, E>)>();
    // Workers are threads of their own, not pool jobs: a pool thread waiting inside a pass (in
    // a join of its products) could otherwise pick up a queued worker job and start a pass
    // nested in its own backward, which would wait on locks its thread holds (burn-autodiff's
    // graph locks, `BACKWARD`). The passes' products and element-wise kernels still run on
    // the pool.
    std::thread::scope(|s| {
        for _ in 0..workers {
            let tx = tx.clone();
            let (next, failed, job) = (&next, &failed, &job);
            s.spawn(move || {
                while !failed.load(Ordering::Relaxed) {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&i) = order.get(k) else { break };
                    let result = job(i);
                    if result.is_err() {
                        failed.store(true, Ordering::Relaxed);
                    }
                    if tx.send((i, result)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        // Every sender is gone once the workers have stopped.
        for message in &rx {
            receive(message);
        }
    });
    if let Some(e) = first_err {
        return Err(e);
    }
    // Without an error every job ran once and reported.
    Ok(results.into_iter().flatten().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_job_runs_once_and_results_keep_job_order() {
        for concurrent in [true, false] {
            let order: Vec<usize> = (0..23).rev().collect();
            let mut seen = Vec::new();
            let out: Vec<usize> =
                run_passes(&order, concurrent, |i| Ok::<_, ()>(i * 10), &mut |i, v| seen.push((i, *v))).unwrap();
            assert_eq!(out, (0..23).map(|i| i * 10).collect::<Vec<_>>());
            if !concurrent {
                // One after another: reported in the order given.
                assert_eq!(seen.iter().map(|s| s.0).collect::<Vec<_>>(), order);
            }
            seen.sort();
            assert_eq!(seen, (0..23).map(|i| (i, i * 10)).collect::<Vec<_>>());
        }
    }

    #[test]
    fn an_error_is_returned_and_stops_new_jobs() {
        let order: Vec<usize> = (0..1000).collect();
        let started = AtomicUsize::new(0);
        let r: Result<Vec<()>, String> = run_passes(
            &order,
            true,
            |i| {
                started.fetch_add(1, Ordering::Relaxed);
                if i == 3 {
                    Err(format!("job {i}"))
                } else {
                    Ok(())
                }
            },
            &mut |_, _| {},
        );
        assert_eq!(r.unwrap_err(), "job 3");
        // Jobs already taken may finish; no job starts after the failure is seen.
        assert!(started.load(Ordering::Relaxed) < 1000);
    }

    #[test]
    fn callers_on_a_pool_thread_make_progress_on_pools_of_any_size() {
        for threads in [1, 2, 3] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            let order: Vec<usize> = (0..17).collect();
            let mut reported = 0;
            let out: Vec<usize> =
                pool.install(|| run_passes(&order, true, |i| Ok::<_, ()>(i + 1), &mut |_, _| reported += 1)).unwrap();
            assert_eq!(out, (1..18).collect::<Vec<_>>(), "{threads} threads");
            assert_eq!(reported, 17);
        }
    }

    #[test]
    fn no_jobs_give_no_results() {
        let out: Vec<u8> = run_passes(&[], true, |_| Ok::<_, ()>(0), &mut |_, _| {}).unwrap();
        assert!(out.is_empty());
    }
}
