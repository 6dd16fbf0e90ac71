//! `bertling bench --profile`: time per operator type over requests of each sequence length, and the
//! planned nodes that would compute from weights alone.

use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use bertling::profile::{by_op, NodeTime};
use bertling::{LoadOptions, Model};

/// Profiles `runs` requests per sequence length (after `warmup`), with `threads` threads, in this
/// process.
pub fn run(
    model_path: &Path,
    seqs: &[usize],
    threads: usize,
    runs: usize,
    warmup: usize,
) -> Result<()> {
    let inputs = crate::bench::make_inputs(model_path, seqs)?;
    let mut model = Model::load_with(model_path, &LoadOptions { threads })?;
    let weight_only = model.weight_only_nodes();
    outln!(
        "{} ({}), {threads} thread(s), {warmup} warm-up + {runs} profiled requests per length",
        model_path.display(),
        model.manifest().precision
    );
    if weight_only.is_empty() {
        outln!("planned nodes computing from weights alone: none");
    } else {
        outln!(
            "planned nodes computing from weights alone ({}): {}",
            weight_only.len(),
            weight_only.join(", ")
        );
    }
    if std::env::var_os("BERTLING_PROFILE_MATMULS").is_some() {
        for line in model.matmul_lines() {
            outln!("{line}");
        }
    }
    for input in &inputs.inputs {
        for _ in 0..warmup {
            model.fill_mask(&input.text, 5)?;
        }
        let mut all: Vec<NodeTime> = vec![];
        for _ in 0..runs.max(1) {
            all.extend(model.profile(&input.text, 5)?);
        }
        let n = runs.max(1) as u32;
        if std::env::var_os("BERTLING_PROFILE_MATMULS").is_some() {
            let mut nodes = all.clone();
            nodes.sort_by_key(|t| std::cmp::Reverse(t.time));
            for t in nodes.iter().take(12) {
                outln!("  {:>9.3} ms {} {} ({})", ms(t.time), t.graph, t.node, t.op);
            }
        }
        let total: Duration = all.iter().map(|t| t.time).sum::<Duration>() / n;
        outln!(
            "\nseq {}: {:.2} ms a request in planned nodes",
            input.ids.len(),
            ms(total)
        );
        outln!(
            "{:<28} {:>10} {:>7} {:>6}",
            "op",
            "ms/req",
            "share",
            "nodes"
        );
        for (op, time, count) in by_op(&all) {
            let per = time / n;
            outln!(
                "{:<28} {:>10.3} {:>6.1}% {:>6}",
                op,
                ms(per),
                100.0 * per.as_secs_f64() / total.as_secs_f64().max(1e-12),
                count / n as usize
            );
        }
    }
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
