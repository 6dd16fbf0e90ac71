//! The counting allocator counts a known allocation pattern exactly.

use bertling_tools::alloc_counter::{
    mark_thread_peak, thread_peak_since_mark, CountingAlloc, Counts,
};
use std::hint::black_box;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// Runs `f` and returns what the calling thread allocated meanwhile.
fn counted(f: impl FnOnce()) -> Counts {
    let before = Counts::thread();
    f();
    Counts::thread().since(&before)
}

#[test]
fn is_installed() {
    let _v = black_box(vec![1u8; 3]);
    assert!(CountingAlloc::installed());
}

#[test]
fn vec_with_capacity_is_one_allocation_of_n_times_size() {
    let c = counted(|| {
        let v: Vec<u64> = black_box(Vec::with_capacity(1000));
        drop(v);
    });
    assert_eq!(
        c,
        Counts {
            allocs: 1,
            deallocs: 1,
            reallocs: 0,
            allocated_bytes: 8000,
            freed_bytes: 8000,
        }
    );
    assert_eq!(c.net_bytes(), 0);
}

#[test]
fn a_box_is_one_allocation_of_its_size_and_zero_sized_types_none() {
    let c = counted(|| {
        let b = black_box(Box::new([7u32; 5]));
        let z = black_box(Box::new(()));
        drop(z);
        drop(b);
    });
    assert_eq!(
        c,
        Counts {
            allocs: 1,
            deallocs: 1,
            reallocs: 0,
            allocated_bytes: 20,
            freed_bytes: 20,
        }
    );
}

#[test]
fn string_growth_by_reserve_exact_is_one_alloc_then_reallocs() {
    let mut kept = String::new();
    let c = counted(|| {
        let mut s = String::new(); // no allocation yet
        s.reserve_exact(10); // alloc 10
        s.push_str("0123456789"); // fits
        s.reserve_exact(90); // realloc 10 -> 100
        s.push_str(&"x".repeat(90)); // the temporary: alloc 90, dealloc 90
        s.reserve_exact(100); // realloc 100 -> 200
        s.shrink_to_fit(); // realloc 200 -> 100
        kept = black_box(s); // moved out, not freed: the heap grows by 100
    });
    assert_eq!(
        c,
        Counts {
            allocs: 2,
            deallocs: 1,
            reallocs: 3,
            allocated_bytes: 10 + 100 + 90 + 200 + 100,
            freed_bytes: 10 + 90 + 100 + 200,
        }
    );
    assert_eq!(c.net_bytes(), 100);
    assert_eq!(c.calls(), 5);
    assert_eq!(kept.len(), 100);
}

#[test]
fn nothing_allocated_counts_nothing() {
    let c = counted(|| {
        let mut a = [0u64; 64];
        for (i, x) in a.iter_mut().enumerate() {
            *x = i as u64;
        }
        black_box(&a);
    });
    assert_eq!(c, Counts::default());
}

#[test]
fn the_global_counter_sees_other_threads() {
    let before = Counts::global();
    std::thread::spawn(|| {
        let v: Vec<u8> = black_box(Vec::with_capacity(12_345));
        drop(v);
    })
    .join()
    .unwrap();
    let c = Counts::global().since(&before);
    // Other test threads may allocate meanwhile: at least the known pattern is there.
    assert!(c.allocs >= 1 && c.allocated_bytes >= 12_345, "{c:?}");
}

#[test]
fn the_thread_peak_is_the_most_bytes_held_at_once_above_the_mark() {
    let kept = black_box(vec![0u8; 1000]); // before the mark: not counted
    mark_thread_peak();
    assert_eq!(thread_peak_since_mark(), 0);
    let a = black_box(vec![0u8; 4096]);
    let b = black_box(vec![0u8; 8192]);
    drop(a);
    let c = black_box(vec![0u8; 2048]); // fits under the peak: 4096 + 8192
    drop(b);
    drop(c);
    assert_eq!(thread_peak_since_mark(), 4096 + 8192);
    let mut v: Vec<u8> = black_box(Vec::with_capacity(10_000)); // peak 12288 still
    v.reserve_exact(20_000); // a realloc to 20000: the new size alone counts once moved
    assert_eq!(thread_peak_since_mark(), 20_000);
    drop(v);
    drop(kept); // freed below the mark: the peak stays
    assert_eq!(thread_peak_since_mark(), 20_000);
}
