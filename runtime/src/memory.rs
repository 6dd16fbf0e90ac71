//! How the process allocator treats the tensors a request frees.
//!
//! tract allocates each planned node's output tensor during a request and frees it when its last
//! reader has run. With glibc's default malloc, blocks of 128 KiB and more come from `mmap` and
//! go back to the kernel when freed, and the top of the heap is returned (`trim`) once more than
//! twice that is free; the next request then page-faults the same memory in again, zeroed by the
//! kernel. At 128 tokens an ALBERT-base request re-faulted ~2,500 pages (~10 MB) every time: ~5%
//! of its latency on this machine (BENCHMARKS.md). [`retain_freed_memory`] tells malloc to keep
//! freed memory for reuse instead; a process's resident memory then stays at its peak (which the
//! requests reached anyway) rather than shrinking between requests. onnxruntime gets the same
//! effect from its own arena allocator.
//!
//! bertling's binaries (`bertling`, `bertling-run`, the kiosk daemon) call it at startup; a library
//! user decides for their own process.

/// The largest block glibc will serve from the heap when asked (`HEAP_MAX_SIZE / 2` on 64-bit).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: i32 = 32 << 20;

/// Free memory at the top of the heap kept before any is returned to the kernel.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TRIM_THRESHOLD: i32 = 1 << 30;

/// Makes malloc keep the memory freed by one request for the next (glibc on Linux: blocks up to
/// 32 MiB from the heap, and up to 1 GiB of free heap kept); returns whether it applied (always
/// `false` on other C libraries, where nothing changes).
///
/// ```
/// let applied = bertling::memory::retain_freed_memory();
/// assert_eq!(applied, cfg!(all(target_os = "linux", target_env = "gnu")));
/// ```
pub fn retain_freed_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only changes two allocator parameters (it takes malloc's own lock);
        // memory already allocated is unaffected.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}
