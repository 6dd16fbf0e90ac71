//! The memory `bertling inspect` plans for a request against what a request allocates: the
//! counting allocator watches the heap while the model runs at a length, and the plan's
//! activations and int8 scratch must account for what it held at its peak.

use bertling::{LoadOptions, Model};
use bertling_tests::{compiled, compiled_int8, ARCHS};
use bertling_tools::alloc_counter::{mark_thread_peak, thread_peak_since_mark, CountingAlloc};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// `n` token ids: the sequence start, ordinary tokens, `masks` masks, the sequence end.
fn ids(model: &Model, n: usize, masks: usize) -> Vec<u32> {
    let st = &model.manifest().special_tokens;
    let word = (0..model.manifest().vocab_size)
        .find(|id| {
            ![
                Some(&st.mask),
                st.pad.as_ref(),
                st.cls.as_ref(),
                st.sep.as_ref(),
            ]
            .iter()
            .flatten()
            .any(|t| t.id == *id)
                && *id > 4
        })
        .unwrap();
    let mut ids = vec![word; n];
    ids[0] = st.cls.as_ref().map_or(word, |t| t.id);
    ids[n - 1] = st.sep.as_ref().map_or(word, |t| t.id);
    for m in 0..masks {
        ids[1 + m * (n - 2) / masks] = st.mask.id;
    }
    ids
}

#[test]
fn a_request_holds_no_more_than_its_planned_memory_nor_much_less() {
    for path in ARCHS.iter().flat_map(|a| [compiled(a), compiled_int8(a)]) {
        // One thread: every allocation of the request happens on this one.
        let mut model = Model::load_with(&path, &LoadOptions { threads: 1 }).unwrap();
        let max = model.manifest().max_tokens as usize;
        let mut planned_before = 0;
        for (n, masks) in [(16, 1), (128, 3), (max, bertling::MAX_MASKS)] {
            let ids = ids(&model, n, masks);
            let types = vec![0; n];
            // The first request at a length grows the retained buffers (int8 codes, tract's
            // scratch); the second holds only what a request allocates and frees.
            model.forward_ids(&ids, &types).unwrap();
            mark_thread_peak();
            model.forward_ids(&ids, &types).unwrap();
            let held = thread_peak_since_mark();
            let f = model.footprint(n, masks).unwrap();
            let planned = f.activations;
            println!(
                "{} n={n} masks={masks}: planned activations {planned} B (scratch {}), held at peak {held} B",
                path.display(),
                f.scratch
            );
            // tract's own small allocations (a few kB a request) on top of the tensors.
            assert!(
                held <= planned + planned / 4 + 8192,
                "{}: {n} tokens held {held} B at peak, more than planned ({planned} B)",
                path.display()
            );
            assert!(
                held >= planned * 3 / 4,
                "{}: {n} tokens held {held} B at peak; the plan's {planned} B is far off",
                path.display()
            );
            assert!(planned >= planned_before, "longer requests plan no less");
            planned_before = planned;
            // Weights: about the stored tensors' bytes, which the loader copies (less the 64-byte
            // alignment of each, and tensors the plans no longer read; more what it derives).
            let stored = model
                .manifest()
                .sections
                .iter()
                .find(|s| s.kind == bertling::format::SectionKind::Tensors);
            let stored = stored.map_or(0, |s| s.len);
            println!("weights {} for {stored} stored", f.weights);
            assert!(
                f.weights >= stored * 3 / 4 && f.weights <= stored * 13 / 10,
                "{}: weights {} B for {stored} B stored",
                path.display(),
                f.weights
            );
        }
    }
}
