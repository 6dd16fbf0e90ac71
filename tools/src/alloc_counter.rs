//! A counting global allocator: wraps the system allocator and counts allocations and bytes, both
//! process-wide (atomics, every thread: what `bertling bench` reports, since tract's executor
//! allocates on its worker threads too) and per thread (exact even while other threads allocate:
//! what the tests use).
//!
//! A binary opts in with
//! ```ignore
//! #[global_allocator]
//! static ALLOC: bertling_tools::alloc_counter::CountingAlloc = bertling_tools::alloc_counter::CountingAlloc;
//! ```
//! The `bertling` binary does. Without that line the counters stay at zero
//! ([`CountingAlloc::installed`] tells).
//!
//! Counting rules: `alloc`/`alloc_zeroed` is one allocation of `size` bytes; `dealloc` one
//! deallocation of `size` bytes; `realloc` is counted as one *reallocation* (not an allocation)
//! that adds `new_size` to the bytes allocated and `old_size` to the bytes freed, so that
//! `allocated_bytes - freed_bytes` is always the live heap.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

/// The allocator. Zero-sized; all state is in statics.
pub struct CountingAlloc;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static DEALLOCS: AtomicU64 = AtomicU64::new(0);
static REALLOCS: AtomicU64 = AtomicU64::new(0);
static ALLOC_BYTES: AtomicU64 = AtomicU64::new(0);
static FREED_BYTES: AtomicU64 = AtomicU64::new(0);
static INSTALLED: AtomicBool = AtomicBool::new(false);

thread_local! {
    // const-initialized, no destructor: accessing these never allocates, so the allocator may use them.
    static T_ALLOCS: Cell<u64> = const { Cell::new(0) };
    static T_DEALLOCS: Cell<u64> = const { Cell::new(0) };
    static T_REALLOCS: Cell<u64> = const { Cell::new(0) };
    static T_ALLOC_BYTES: Cell<u64> = const { Cell::new(0) };
    static T_FREED_BYTES: Cell<u64> = const { Cell::new(0) };
    // Live bytes of the calling thread (its allocations less what it freed, whichever thread
    // allocated them) and the most they reached since the last [`mark_thread_peak`].
    static T_LIVE: Cell<i64> = const { Cell::new(0) };
    static T_PEAK: Cell<i64> = const { Cell::new(0) };
    static T_MARK: Cell<i64> = const { Cell::new(0) };
}

fn live_add(by: i64) {
    let _ = T_LIVE.try_with(|live| {
        let now = live.get().wrapping_add(by);
        live.set(now);
        let _ = T_PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

/// Starts a peak measurement on the calling thread: [`thread_peak_since_mark`] then tells the
/// most bytes the thread's heap held above this moment's level.
pub fn mark_thread_peak() {
    let now = T_LIVE.try_with(Cell::get).unwrap_or(0);
    let _ = T_MARK.try_with(|m| m.set(now));
    let _ = T_PEAK.try_with(|p| p.set(now));
}

/// The most bytes the calling thread's heap held above its level at [`mark_thread_peak`] (0 if
/// it never rose above it). Exact for work done on the calling thread alone.
pub fn thread_peak_since_mark() -> u64 {
    let peak = T_PEAK.try_with(Cell::get).unwrap_or(0);
    let mark = T_MARK.try_with(Cell::get).unwrap_or(0);
    peak.saturating_sub(mark).max(0) as u64
}

fn bump(global: &AtomicU64, local: &'static std::thread::LocalKey<Cell<u64>>, by: u64) {
    global.fetch_add(by, Relaxed);
    // Fails only while the thread is being torn down; the global count still has it.
    let _ = local.try_with(|c| c.set(c.get().wrapping_add(by)));
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged; the counting
// touches only atomics and const thread-locals, which never allocate.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            count_alloc(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc_zeroed(layout);
        if !p.is_null() {
            count_alloc(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        live_add(-(layout.size() as i64));
        bump(&DEALLOCS, &T_DEALLOCS, 1);
        bump(&FREED_BYTES, &T_FREED_BYTES, layout.size() as u64);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = System.realloc(ptr, layout, new_size);
        if !p.is_null() {
            INSTALLED.store(true, Relaxed);
            live_add(new_size as i64 - layout.size() as i64);
            bump(&REALLOCS, &T_REALLOCS, 1);
            bump(&ALLOC_BYTES, &T_ALLOC_BYTES, new_size as u64);
            bump(&FREED_BYTES, &T_FREED_BYTES, layout.size() as u64);
        }
        p
    }
}

fn count_alloc(size: usize) {
    INSTALLED.store(true, Relaxed);
    live_add(size as i64);
    bump(&ALLOCS, &T_ALLOCS, 1);
    bump(&ALLOC_BYTES, &T_ALLOC_BYTES, size as u64);
}

impl CountingAlloc {
    /// Whether this allocator is the global allocator of the running program (it has seen an
    /// allocation; any Rust program allocates before `main`).
    pub fn installed() -> bool {
        INSTALLED.load(Relaxed)
    }
}

/// A snapshot of the counters. Subtract two snapshots ([`Counts::since`]) to count what happened
/// in between.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    /// Allocations (`alloc`, `alloc_zeroed`).
    pub allocs: u64,
    /// Deallocations.
    pub deallocs: u64,
    /// Reallocations (grown or shrunk in place or moved).
    pub reallocs: u64,
    /// Bytes requested by allocations and reallocations (a realloc adds its new size).
    pub allocated_bytes: u64,
    /// Bytes released by deallocations and reallocations (a realloc adds its old size).
    pub freed_bytes: u64,
}

impl Counts {
    /// Process-wide counters (all threads).
    pub fn global() -> Counts {
        Counts {
            allocs: ALLOCS.load(Relaxed),
            deallocs: DEALLOCS.load(Relaxed),
            reallocs: REALLOCS.load(Relaxed),
            allocated_bytes: ALLOC_BYTES.load(Relaxed),
            freed_bytes: FREED_BYTES.load(Relaxed),
        }
    }

    /// The calling thread's counters.
    pub fn thread() -> Counts {
        let get = |k: &'static std::thread::LocalKey<Cell<u64>>| k.try_with(Cell::get).unwrap_or(0);
        Counts {
            allocs: get(&T_ALLOCS),
            deallocs: get(&T_DEALLOCS),
            reallocs: get(&T_REALLOCS),
            allocated_bytes: get(&T_ALLOC_BYTES),
            freed_bytes: get(&T_FREED_BYTES),
        }
    }

    /// What happened between `earlier` and `self`.
    pub fn since(&self, earlier: &Counts) -> Counts {
        Counts {
            allocs: self.allocs.wrapping_sub(earlier.allocs),
            deallocs: self.deallocs.wrapping_sub(earlier.deallocs),
            reallocs: self.reallocs.wrapping_sub(earlier.reallocs),
            allocated_bytes: self.allocated_bytes.wrapping_sub(earlier.allocated_bytes),
            freed_bytes: self.freed_bytes.wrapping_sub(earlier.freed_bytes),
        }
    }

    /// Heap growth: bytes allocated less bytes freed (negative if the heap shrank).
    pub fn net_bytes(&self) -> i64 {
        self.allocated_bytes as i64 - self.freed_bytes as i64
    }

    /// Allocations plus reallocations: every call that asked the allocator for memory.
    pub fn calls(&self) -> u64 {
        self.allocs + self.reallocs
    }
}
