//! Fixed-capacity fill-mask results, and the softmax / top-k that produces them without allocating.

use heapless::Vec as HVec;

/// The most candidates one mask can return (`k`).
pub const MAX_TOP_K: usize = 64;
/// The most masks one request can hold.
pub const MAX_MASKS: usize = 16;

/// One candidate token for one mask.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    /// The token id.
    pub token: u32,
    /// Its probability under the softmax over the whole vocabulary at this position.
    pub score: f32,
    /// Its raw logit.
    pub logit: f32,
}

/// The top-k candidates for one mask.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MaskPrediction {
    /// The mask's index in the token sequence (special tokens included).
    pub position: u32,
    /// Candidates, most probable first.
    pub candidates: HVec<Candidate, MAX_TOP_K>,
}

/// The answer to one fill-mask request: one [`MaskPrediction`] per mask, in text order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FillMask {
    /// Per-mask predictions.
    pub masks: HVec<MaskPrediction, MAX_MASKS>,
}

/// Fills `out` with the `k` highest-scoring entries of `logits`, most probable first, with
/// probabilities from a numerically stable softmax over all of `logits`. Ties keep the lower token
/// id first. Allocates nothing.
///
/// ```
/// use bertling::predictions::{top_k_softmax, MaskPrediction};
/// let mut out = MaskPrediction::default();
/// top_k_softmax(&[0.0, 2.0, 1.0], 2, &mut out);
/// assert_eq!(out.candidates[0].token, 1);
/// assert_eq!(out.candidates[1].token, 2);
/// assert!((out.candidates[0].score - 0.665241).abs() < 1e-5);
/// ```
pub fn top_k_softmax(logits: &[f32], k: usize, out: &mut MaskPrediction) {
    let k = k.min(MAX_TOP_K).min(logits.len());
    out.candidates.clear();
    if k == 0 {
        return;
    }
    // Insertion into a small sorted array: O(V * k) worst case, O(V) in practice.
    let better = |a: &Candidate, b: &Candidate| {
        a.logit > b.logit || (a.logit == b.logit && a.token < b.token)
    };
    let mut max = f32::NEG_INFINITY;
    for (i, &l) in logits.iter().enumerate() {
        max = max.max(l);
        let c = Candidate {
            token: i as u32,
            score: 0.0,
            logit: l,
        };
        if out.candidates.len() == k {
            if !better(&c, &out.candidates[k - 1]) {
                continue;
            }
            out.candidates.pop();
        }
        let at = out
            .candidates
            .iter()
            .position(|o| better(&c, o))
            .unwrap_or(out.candidates.len());
        // Capacity is MAX_TOP_K >= k > len here.
        let _ = out.candidates.insert(at, c);
    }
    let sum: f64 = logits.iter().map(|&l| ((l - max) as f64).exp()).sum();
    for c in out.candidates.iter_mut() {
        c.score = (((c.logit - max) as f64).exp() / sum) as f32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_a_full_sort() {
        let logits: Vec<f32> = (0..1000u32)
            .map(|i| ((i * 7919) % 1009) as f32 * 0.01 - 3.0)
            .collect();
        let mut out = MaskPrediction::default();
        top_k_softmax(&logits, 10, &mut out);
        let mut idx: Vec<usize> = (0..logits.len()).collect();
        idx.sort_by(|&a, &b| logits[b].partial_cmp(&logits[a]).unwrap().then(a.cmp(&b)));
        let got: Vec<usize> = out.candidates.iter().map(|c| c.token as usize).collect();
        assert_eq!(got, idx[..10]);
        let max = logits[idx[0]];
        let sum: f64 = logits.iter().map(|&l| ((l - max) as f64).exp()).sum();
        for c in &out.candidates {
            let p = ((c.logit - max) as f64).exp() / sum;
            assert!((c.score as f64 - p).abs() < 1e-7);
        }
    }

    #[test]
    fn k_larger_than_vocab_and_ties() {
        let mut out = MaskPrediction::default();
        top_k_softmax(&[1.0, 1.0, 1.0], 10, &mut out);
        let ids: Vec<u32> = out.candidates.iter().map(|c| c.token).collect();
        assert_eq!(ids, vec![0, 1, 2]);
        assert!(out
            .candidates
            .iter()
            .all(|c| (c.score - 1.0 / 3.0).abs() < 1e-6));
    }

    #[test]
    fn large_logits_do_not_overflow() {
        let mut out = MaskPrediction::default();
        top_k_softmax(&[1000.0, 999.0, -1000.0], 1, &mut out);
        assert!((out.candidates[0].score - 0.7310586).abs() < 1e-6);
    }
}
