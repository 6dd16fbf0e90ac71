//! Splitting one operator's work across the threads a request runs on
//! ([`crate::LoadOptions::threads`]): [`crate::int8::Int8Linear`] splits its output channels,
//! [`crate::attention::Attention`] its heads, LayerNorm and the GELU their rows.
//!
//! A model with more than one thread owns a [`Team`]: helper threads that, once woken by a
//! request, **spin** between its parallel parts instead of sleeping, and go to sleep after
//! [`SPIN`] without work. A request runs a few hundred parallel parts (every product, attention,
//! norm), each a few tens of microseconds at short inputs; waking a sleeping thread for each (what
//! a rayon pool does once its threads have gone idle) costs about as much again on a VM's vCPUs.
//! onnxruntime's pool spins the same way. Outside a team (tests, library users running tract's
//! executor), the parts go to tract's current executor.
//!
//! Parts are **claimed, not assigned**: every thread, the caller included, takes the next part
//! not yet taken until none is left, and the caller waits only for parts a helper has taken. A
//! helper the OS has not scheduled (another process busy on its core, more threads than cores)
//! then costs nothing: the caller runs its part too, and the request runs at one thread's speed
//! instead of waiting a time slice for each of its few hundred parts. Waiting threads yield the
//! CPU while they spin, so a helper sharing a core with the caller cannot starve it.

use std::cell::Cell;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle, Thread};
use std::time::{Duration, Instant};

use tract_linalg::multithread::{current_tract_executor, Executor};

/// How long a helper spins for the next part before it goes to sleep.
pub const SPIN: Duration = Duration::from_millis(2);

/// Spinning threads yield the CPU every this many turns of their loop (a few microseconds), so
/// a thread the OS would run on the same core gets it.
const YIELD_EVERY: u32 = 256;

/// Below this many elements LayerNorm and the GELU run on one thread (tract's own threshold).
pub(crate) const PARALLEL_MIN_ELEMENTS: usize = 32768;

/// Below this many multiply-adds an operator runs on one thread even with a thread pool.
pub(crate) const PARALLEL_MIN_MACS: usize = 1 << 20;

/// A raw output pointer that threads write disjoint elements through.
#[derive(Clone, Copy)]
struct OutPtr(*mut f32, usize);
// SAFETY: each task writes a disjoint set of elements of the output (`split`'s contract).
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

impl OutPtr {
    /// Elements `from..from + len` of the output.
    ///
    /// # Safety
    /// The output must still be alive and the range within it, and no other thread may access
    /// these elements meanwhile.
    unsafe fn slice<'a>(&self, from: usize, len: usize) -> &'a mut [f32] {
        debug_assert!(from + len <= self.1);
        // SAFETY: the caller's contract.
        unsafe { std::slice::from_raw_parts_mut(self.0.add(from), len) }
    }
}

/// Runs `part((u0, u1), out)` for units `0..units`: in contiguous ranges, one per thread of the
/// current [`Team`] (else of tract's current executor), when there is one and `parallel`; else
/// once, on the calling thread, with `(0, units)`.
///
/// # Safety
/// Every call of `part` is handed the whole of `out`; it must write only the elements its range of
/// units owns (no two ranges may write, or one write and another read, the same element).
pub(crate) unsafe fn split(
    units: usize,
    parallel: bool,
    out: &mut [f32],
    part: impl Fn((usize, usize), &mut [f32]) + Sync,
) {
    if parallel {
        if let Some(team) = Team::current() {
            let threads = team.threads();
            let per = units.div_ceil(threads);
            let ptr = OutPtr(out.as_mut_ptr(), out.len());
            team.run(&|t| {
                let (u0, u1) = ((t * per).min(units), ((t + 1) * per).min(units));
                if u0 < u1 {
                    // SAFETY: `out` outlives the run; the caller guarantees the ranges write
                    // disjoint elements.
                    let out = unsafe { ptr.slice(0, ptr.1) };
                    part((u0, u1), out);
                }
            });
            return;
        }
    }
    let pool = match current_tract_executor() {
        #[allow(unreachable_patterns)]
        Executor::MultiThread(pool) if parallel => Some(pool),
        _ => None,
    };
    let Some(pool) = pool else {
        return part((0, units), out);
    };
    let threads = pool.current_num_threads().max(1);
    let per = units.div_ceil(threads);
    let ptr = OutPtr(out.as_mut_ptr(), out.len());
    let part = &part;
    pool.scope(|s| {
        for t in 0..threads {
            let (u0, u1) = ((t * per).min(units), ((t + 1) * per).min(units));
            if u0 == u1 {
                continue;
            }
            s.spawn(move |_| {
                let ptr = ptr;
                // SAFETY: `out` outlives the scope; the caller guarantees the ranges write
                // disjoint elements.
                let out = unsafe { std::slice::from_raw_parts_mut(ptr.0, ptr.1) };
                part((u0, u1), out);
            });
        }
    });
}

/// A buffer of rows that parallel parts fill, each part its own rows (see [`par_ranges`]).
pub(crate) struct RowsMut<'a, T> {
    ptr: *mut T,
    len: usize,
    row_len: usize,
    _buf: std::marker::PhantomData<&'a mut [T]>,
}
// SAFETY: parts reach the buffer only through `rows`, whose contract keeps them disjoint.
unsafe impl<T: Send> Send for RowsMut<'_, T> {}
unsafe impl<T: Send> Sync for RowsMut<'_, T> {}

impl<'a, T> RowsMut<'a, T> {
    /// `buf` as rows of `row_len`.
    pub(crate) fn new(buf: &'a mut [T], row_len: usize) -> Self {
        RowsMut {
            ptr: buf.as_mut_ptr(),
            len: buf.len(),
            row_len,
            _buf: std::marker::PhantomData,
        }
    }

    /// Rows `r0..r1`.
    ///
    /// # Safety
    /// No other part may access these rows while the slice lives.
    pub(crate) unsafe fn rows(&self, r0: usize, r1: usize) -> &'a mut [T] {
        let (from, to) = (r0 * self.row_len, r1 * self.row_len);
        assert!(
            r0 <= r1 && to <= self.len,
            "rows {r0}..{r1} out of the buffer"
        );
        // SAFETY: in bounds (asserted); the buffer is borrowed for 'a; the caller keeps the
        // rows exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(from), to - from) }
    }
}

/// Runs `f(r0, r1)` over rows `0..rows` cut into contiguous ranges, one per thread of the current
/// [`Team`] when there is one and `parallel`; otherwise `f(0, rows)` on the calling thread (also
/// under tract's executor: what is split this way is short).
pub(crate) fn par_ranges(rows: usize, parallel: bool, f: impl Fn(usize, usize) + Sync) {
    match Team::current() {
        Some(team) if parallel && rows >= 2 => {
            let per = rows.div_ceil(team.threads());
            team.run(&|t| {
                let (r0, r1) = ((t * per).min(rows), ((t + 1) * per).min(rows));
                if r0 < r1 {
                    f(r0, r1);
                }
            });
        }
        _ => f(0, rows),
    }
}

/// Runs `f(first_row, rows)` over `data` cut into whole rows of `row_len`: split between the
/// current [`Team`]'s threads when there is one and `data` is two or more whole rows of at least
/// [`PARALLEL_MIN_ELEMENTS`] in all; otherwise as tract's `par_chunks_mut` does it (on tract's
/// current executor, or once below its own threshold).
pub(crate) fn par_rows(
    data: &mut [f32],
    row_len: usize,
    f: impl Fn(usize, &mut [f32]) -> tract_core::internal::TractResult<()> + Sync + Send,
) -> tract_core::internal::TractResult<()> {
    let n_rows = data.len().checked_div(row_len).unwrap_or(0);
    if let (Some(team), true) = (
        Team::current(),
        n_rows >= 2 && n_rows * row_len == data.len() && data.len() >= PARALLEL_MIN_ELEMENTS,
    ) {
        let threads = team.threads();
        let per = n_rows.div_ceil(threads);
        let ptr = OutPtr(data.as_mut_ptr(), data.len());
        let failed = Mutex::new(None);
        team.run(&|t| {
            let (r0, r1) = ((t * per).min(n_rows), ((t + 1) * per).min(n_rows));
            if r0 < r1 {
                // SAFETY: the rows r0..r1 of `data` are this part's alone, and `data` outlives
                // the run.
                let rows = unsafe { ptr.slice(r0 * row_len, (r1 - r0) * row_len) };
                if let Err(e) = f(r0, rows) {
                    *failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                }
            }
        });
        return match failed.into_inner().unwrap_or_else(|p| p.into_inner()) {
            Some(e) => Err(e),
            None => Ok(()),
        };
    }
    tract_linalg::multithread::par_chunks_mut(data, row_len.max(1), data.len(), f)
}

/// A job the team runs: `f(part)` for every part in `0..parts`, each claimed by one thread.
#[derive(Clone, Copy)]
struct Job {
    f: *const (dyn Fn(usize) + Sync + 'static),
    parts: usize,
}
// SAFETY: the closure is `Sync`, and [`Team::run`] keeps it alive until no helper holds it.
unsafe impl Send for Job {}

struct Shared {
    /// Bumped once per job; helpers wait for it to change.
    generation: AtomicU64,
    /// The current job; `None` once its caller has taken the last part. A helper counts itself
    /// in `holding` under this lock, so the caller, having cleared it, waits for exactly the
    /// helpers that can still reach the closure.
    job: Mutex<Option<Job>>,
    /// The next part of the current job not yet claimed.
    next: AtomicUsize,
    /// Helpers holding the current job (running or about to claim its parts).
    holding: AtomicUsize,
    /// Whether a helper's part panicked during the current job.
    panicked: AtomicBool,
    /// Tests: helpers wait here before taking a job, as if the OS had not scheduled them.
    #[cfg(test)]
    hold: AtomicBool,
    /// Per helper: asleep (or about to be), so the next job must wake it.
    parked: Vec<AtomicBool>,
    quit: AtomicBool,
}

/// Helper threads for one model's requests (module doc): `threads - 1` of them, the calling
/// thread being the first. Dropping it stops and joins them.
pub struct Team {
    shared: Arc<Shared>,
    helpers: Vec<(Thread, JoinHandle<()>)>,
    /// Whether a job is running (a part that splits again runs that split on its own thread).
    busy: AtomicBool,
}

thread_local! {
    static CURRENT: Cell<*const Team> = const { Cell::new(std::ptr::null()) };
}

impl Team {
    /// Starts `threads - 1` helper threads (none for 0 or 1).
    pub fn new(threads: usize) -> std::io::Result<Team> {
        let n = threads.max(1) - 1;
        let shared = Arc::new(Shared {
            generation: AtomicU64::new(0),
            job: Mutex::new(None),
            next: AtomicUsize::new(0),
            holding: AtomicUsize::new(0),
            panicked: AtomicBool::new(false),
            #[cfg(test)]
            hold: AtomicBool::new(false),
            parked: (0..n).map(|_| AtomicBool::new(false)).collect(),
            quit: AtomicBool::new(false),
        });
        let mut helpers = Vec::with_capacity(n);
        for i in 0..n {
            let shared = shared.clone();
            let handle = thread::Builder::new()
                .name(format!("bertling-{}", i + 1))
                .spawn(move || helper(&shared, i))?;
            helpers.push((handle.thread().clone(), handle));
        }
        Ok(Team {
            shared,
            helpers,
            busy: AtomicBool::new(false),
        })
    }

    /// The number of threads parts run on (helpers and the caller).
    pub fn threads(&self) -> usize {
        self.helpers.len() + 1
    }

    /// Runs `f` with this team as the calling thread's [`Team::current`].
    pub fn install<R>(&self, f: impl FnOnce() -> R) -> R {
        struct Restore(*const Team);
        impl Drop for Restore {
            fn drop(&mut self) {
                CURRENT.set(self.0);
            }
        }
        let _restore = Restore(CURRENT.replace(self));
        f()
    }

    /// The team [`Team::install`]ed on this thread, if any.
    pub fn current<'a>() -> Option<&'a Team> {
        let ptr = CURRENT.get();
        // SAFETY: `install` sets the pointer only while it borrows the team, and restores the
        // previous one when it returns (or unwinds).
        unsafe { ptr.as_ref() }
    }

    /// Runs `f(part)` for `part` in `0..self.threads()` and returns when all are done: each part
    /// once, on whichever thread claims it first, the calling thread claiming too (module doc). A
    /// panic in any part is resumed here, after every part that had started has finished. Called
    /// while a job runs (a part splitting again), it runs every part on the calling thread.
    pub fn run(&self, f: &(dyn Fn(usize) + Sync)) {
        let parts = self.threads();
        if self.helpers.is_empty() || self.busy.swap(true, SeqCst) {
            for part in 0..parts {
                f(part);
            }
            return;
        }
        let sh = &*self.shared;
        // SAFETY: only the lifetime is erased; helpers reach the closure only while counted in
        // `holding`, and this function waits for that count to fall to zero below.
        let job = Job {
            f: unsafe {
                std::mem::transmute::<
                    *const (dyn Fn(usize) + Sync + '_),
                    *const (dyn Fn(usize) + Sync + 'static),
                >(f)
            },
            parts,
        };
        sh.next.store(0, SeqCst);
        sh.panicked.store(false, SeqCst);
        *sh.job.lock().unwrap_or_else(|p| p.into_inner()) = Some(job);
        sh.generation.fetch_add(1, SeqCst);
        for ((thread, _), parked) in self.helpers.iter().zip(&sh.parked) {
            if parked.load(SeqCst) {
                thread.unpark();
            }
        }
        let mine = catch_unwind(AssertUnwindSafe(|| loop {
            let part = sh.next.fetch_add(1, SeqCst);
            if part >= parts {
                break;
            }
            f(part);
        }));
        // From here on no helper can start holding the job; wait for those that do.
        *sh.job.lock().unwrap_or_else(|p| p.into_inner()) = None;
        let mut spins = 0u32;
        while sh.holding.load(SeqCst) > 0 {
            std::hint::spin_loop();
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(YIELD_EVERY) {
                thread::yield_now();
            }
        }
        self.busy.store(false, SeqCst);
        if let Err(p) = mine {
            resume_unwind(p);
        }
        if sh.panicked.load(SeqCst) {
            panic!("a bertling helper thread panicked");
        }
    }
}

impl Drop for Team {
    fn drop(&mut self) {
        self.shared.quit.store(true, SeqCst);
        for (thread, handle) in self.helpers.drain(..) {
            thread.unpark();
            let _ = handle.join();
        }
    }
}

impl std::fmt::Debug for Team {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Team")
            .field("threads", &self.threads())
            .finish()
    }
}

/// Helper `i`'s loop: wait for a new generation (spinning up to [`SPIN`], yielding now and then,
/// then asleep), claim and run parts of its job until none is left.
fn helper(sh: &Shared, i: usize) {
    // The generation the team started with (not a fresh load: a job may already be published
    // when this thread first runs).
    let mut seen = 0;
    loop {
        let mut since = Instant::now();
        let mut spins = 0u32;
        loop {
            if sh.quit.load(SeqCst) {
                return;
            }
            let g = sh.generation.load(SeqCst);
            if g != seen {
                seen = g;
                break;
            }
            std::hint::spin_loop();
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(YIELD_EVERY) {
                if since.elapsed() >= SPIN {
                    sh.parked[i].store(true, SeqCst);
                    // A job published after the flag was set unparks this thread; one published
                    // before it is seen here.
                    if sh.generation.load(SeqCst) == seen && !sh.quit.load(SeqCst) {
                        thread::park();
                    }
                    sh.parked[i].store(false, SeqCst);
                    since = Instant::now();
                } else {
                    thread::yield_now();
                }
            }
        }
        #[cfg(test)]
        while sh.hold.load(SeqCst) && !sh.quit.load(SeqCst) {
            thread::yield_now();
        }
        // The job may be over (its caller took every part) or a later one: either is right.
        let job = {
            let job = sh.job.lock().unwrap_or_else(|p| p.into_inner());
            if job.is_some() {
                sh.holding.fetch_add(1, SeqCst);
            }
            *job
        };
        if let Some(Job { f, parts }) = job {
            // SAFETY: `Team::run` keeps the closure alive while this helper is counted in
            // `holding`.
            let f = unsafe { &*f };
            let ran = catch_unwind(AssertUnwindSafe(|| loop {
                let part = sh.next.fetch_add(1, SeqCst);
                if part >= parts {
                    break;
                }
                f(part);
            }));
            if ran.is_err() {
                sh.panicked.store(true, SeqCst);
            }
            sh.holding.fetch_sub(1, SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    #[test]
    fn a_team_runs_every_part_once_each_time() {
        for threads in [1, 2, 3] {
            let team = Team::new(threads).unwrap();
            assert_eq!(team.threads(), threads);
            for _ in 0..1000 {
                let hits: Vec<AtomicUsize> = (0..threads).map(|_| AtomicUsize::new(0)).collect();
                team.run(&|part| {
                    hits[part].fetch_add(1, Ordering::SeqCst);
                });
                assert!(hits.iter().all(|h| h.load(Ordering::SeqCst) == 1));
            }
        }
    }

    #[test]
    fn helpers_wake_up_after_sleeping() {
        let team = Team::new(2).unwrap();
        for _ in 0..3 {
            // Longer than SPIN: the helper has gone to sleep and must be woken.
            thread::sleep(SPIN * 3);
            // Each part waits for the other to start: only a woken helper lets them finish.
            let started = AtomicUsize::new(0);
            let on = Mutex::new(Vec::new());
            team.run(&|_| {
                started.fetch_add(1, Ordering::SeqCst);
                let t0 = Instant::now();
                while started.load(Ordering::SeqCst) < 2 {
                    assert!(t0.elapsed() < Duration::from_secs(10), "no helper came");
                    thread::yield_now();
                }
                on.lock().unwrap().push(thread::current().id());
            });
            let on = on.into_inner().unwrap();
            assert_eq!(on.len(), 2);
            assert_ne!(on[0], on[1], "both parts ran on one thread");
        }
    }

    #[test]
    fn a_helper_that_does_not_come_costs_no_wait() {
        // As when the OS runs something else on the helper's core: the caller claims every
        // part itself and returns without waiting for it.
        for threads in [2, 3] {
            let team = Team::new(threads).unwrap();
            team.shared.hold.store(true, SeqCst);
            for _ in 0..100 {
                let on = Mutex::new(Vec::new());
                team.run(&|part| on.lock().unwrap().push((part, thread::current().id())));
                let mut on = on.into_inner().unwrap();
                on.sort_by_key(|&(part, _)| part);
                let me = thread::current().id();
                assert_eq!(on, (0..threads).map(|p| (p, me)).collect::<Vec<_>>());
            }
            team.shared.hold.store(false, SeqCst);
            // Released, the helpers take parts again (and find the jobs they missed over).
            let count = AtomicUsize::new(0);
            team.run(&|_| {
                count.fetch_add(1, Ordering::SeqCst);
            });
            assert_eq!(count.load(Ordering::SeqCst), threads);
        }
    }

    #[test]
    fn a_panicking_part_reaches_the_caller_and_the_team_goes_on() {
        let team = Team::new(2).unwrap();
        for bad in [0, 1] {
            let r = catch_unwind(AssertUnwindSafe(|| {
                team.run(&|part| {
                    if part == bad {
                        panic!("part {part}");
                    }
                })
            }));
            assert!(r.is_err(), "part {bad}'s panic was lost");
        }
        let count = AtomicUsize::new(0);
        team.run(&|_| {
            count.fetch_add(1, Ordering::SeqCst);
        });
        assert_eq!(count.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn a_split_inside_a_part_runs_on_its_own_thread() {
        let team = Team::new(2).unwrap();
        let count = AtomicUsize::new(0);
        team.install(|| {
            Team::current().unwrap().run(&|_| {
                // Nested: the caller's part finds the team busy, a helper finds no team.
                let mut out = [0f32; 8];
                // SAFETY: each range writes its own elements.
                unsafe {
                    split(8, true, &mut out, |(u0, u1), out| {
                        for v in &mut out[u0..u1] {
                            *v += 1.0;
                        }
                    })
                };
                assert_eq!(out, [1.0; 8]);
                count.fetch_add(1, Ordering::SeqCst);
            })
        });
        assert_eq!(count.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn split_par_ranges_and_par_rows_in_a_team_cover_everything_once() {
        let team = Team::new(2).unwrap();
        team.install(|| {
            for units in [0, 1, 2, 7, 64] {
                let mut out = vec![0f32; units];
                // SAFETY: each range writes its own elements.
                unsafe {
                    split(units, true, &mut out, |(u0, u1), out| {
                        for v in &mut out[u0..u1] {
                            *v += 1.0;
                        }
                    })
                };
                assert!(out.iter().all(|&v| v == 1.0), "{units} units");
            }
            for rows in [0, 1, 2, 7] {
                let mut data = vec![0u8; rows * 3];
                let shared = RowsMut::new(&mut data, 3);
                par_ranges(rows, true, |r0, r1| {
                    // SAFETY: rows r0..r1 are this range's alone.
                    unsafe { shared.rows(r0, r1) }
                        .iter_mut()
                        .for_each(|v| *v += 1);
                });
                assert!(data.iter().all(|&v| v == 1), "{rows} rows");
            }
            let (rows, len) = (100, PARALLEL_MIN_ELEMENTS / 50);
            let mut data = vec![0f32; rows * len];
            par_rows(&mut data, len, |first, chunk| {
                for (r, row) in chunk.chunks_exact_mut(len).enumerate() {
                    row.iter_mut().for_each(|v| *v += (first + r) as f32);
                }
                Ok(())
            })
            .unwrap();
            for (r, row) in data.chunks_exact(len).enumerate() {
                assert!(row.iter().all(|&v| v == r as f32), "row {r}");
            }
            let failed = par_rows(&mut data, len, |first, _| {
                tract_core::internal::ensure!(first == 0, "part at row {first} failed");
                Ok(())
            });
            assert!(failed.is_err());
        });
    }
}
