//! Splitting one operator's work across the thread pool a request runs on
//! ([`crate::LoadOptions::threads`]): [`crate::int8::Int8Linear`] splits its output channels,
//! [`crate::attention::Attention`] its heads.

use tract_linalg::multithread::{current_tract_executor, Executor};

/// Below this many multiply-adds an operator runs on one thread even with a thread pool.
pub(crate) const PARALLEL_MIN_MACS: usize = 1 << 20;

/// A raw output pointer that threads write disjoint elements through.
#[derive(Clone, Copy)]
struct OutPtr(*mut f32, usize);
// SAFETY: each task writes a disjoint set of elements of the output (`split`'s contract).
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

/// Runs `part((u0, u1), out)` for units `0..units`: in contiguous ranges, one per thread of the
/// current tract executor, when there is a pool and `parallel`; else once, on the calling thread,
/// with `(0, units)`.
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
