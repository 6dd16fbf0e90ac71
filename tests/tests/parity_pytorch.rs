//! bertling against the committed PyTorch references (transformers' fill-mask pipeline on the same
//! weights): top-5 tokens equal for every mask, probabilities within 1e-4, the same token strings
//! and filled sequences.

use bertling::Model;
use bertling_tests::{compiled, references, ARCHS};

const TOP_K: usize = 5;
const SCORE_TOLERANCE: f64 = 1e-4;

fn check_arch(arch: &str) {
    let refs = references(arch);
    assert_eq!(refs.architecture, arch);
    assert!(
        refs.cases.len() >= 20,
        "{arch}: too few reference sentences"
    );
    let mut model = Model::load(compiled(arch)).unwrap();
    assert_eq!(model.mask_token(), refs.mask_token);
    let mut masks_checked = 0;
    for case in &refs.cases {
        let answer = model
            .fill_mask(&case.text, TOP_K)
            .unwrap_or_else(|e| panic!("{arch}: {:?}: {e}", case.text));
        assert_eq!(
            model.last_input_ids(),
            case.input_ids.as_slice(),
            "{arch}: ids of {:?}",
            case.text
        );
        let positions: Vec<u32> = answer.masks.iter().map(|m| m.position).collect();
        assert_eq!(
            positions, case.mask_positions,
            "{arch}: mask positions of {:?}",
            case.text
        );
        for (i, (got, want)) in answer.masks.iter().zip(&case.masks).enumerate() {
            assert_eq!(got.position, want.position);
            let got_ids: Vec<u32> = got.candidates.iter().map(|c| c.token).collect();
            let want_ids: Vec<u32> = want.top[..TOP_K].iter().map(|p| p.token).collect();
            assert_eq!(
                got_ids, want_ids,
                "{arch}: top-{TOP_K} of mask {i} in {:?}",
                case.text
            );
            for (c, p) in got.candidates.iter().zip(&want.top) {
                assert!(
                    (c.score as f64 - p.score).abs() <= SCORE_TOLERANCE,
                    "{arch}: {:?} mask {i} token {}: score {} vs PyTorch {}",
                    case.text,
                    c.token,
                    c.score,
                    p.score
                );
                assert_eq!(
                    model.token_str(c.token),
                    p.token_str,
                    "{arch}: token_str of {}",
                    c.token
                );
                let seq = model.filled_sequence(&answer, i, c.token).unwrap();
                assert_eq!(
                    seq, p.sequence,
                    "{arch}: sequence for {:?} mask {i} = {}",
                    case.text, c.token
                );
            }
            masks_checked += 1;
        }
        assert_eq!(answer.masks.len(), case.masks.len());
    }
    assert!(
        masks_checked >= 25,
        "{arch}: only {masks_checked} masks checked"
    );
}

#[test]
fn albert_matches_pytorch() {
    check_arch("albert");
}

#[test]
fn distilbert_matches_pytorch() {
    check_arch("distilbert");
}

#[test]
fn bert_matches_pytorch() {
    check_arch("bert");
}

#[test]
fn roberta_matches_pytorch() {
    check_arch("roberta");
}

#[test]
fn all_fixture_families_are_covered() {
    for arch in ARCHS {
        assert!(
            bertling_tests::fixture_dir(arch)
                .join("references.json")
                .exists(),
            "{arch}"
        );
    }
}

#[test]
fn the_last_layer_and_the_vocabulary_projection_run_only_at_the_masks() {
    // Every fixture family compiles into an encoder plus a head that takes the last layer's input
    // and the mask positions: the last layer's attention (one softmax) and everything after it run
    // in the head, every other layer in the encoder. The answers are those of PyTorch (the parity
    // tests above, sentences with one and several masks).
    for arch in ARCHS {
        let mut model = Model::load(compiled(arch)).unwrap();
        let manifest = model.manifest().clone();
        match manifest.output {
            bertling::format::OutputKind::MaskedLayer { hidden } => {
                assert_eq!(hidden, manifest.hidden_size, "{arch}")
            }
            other => panic!("{arch}: {other:?}"),
        }
        // Three masks, and a token count no width of the fixtures equals (16, 32, 64).
        let mask = model.mask_token().to_string();
        let mut text = format!("a {mask} b c d e f g h i j k {mask} l m n o p q r s t {mask} u");
        while [16, 32, 64].contains(&model.encode(&text).unwrap().len()) {
            text.push_str(" v");
        }
        let nodes = model.profile(&text, 1).unwrap();
        let n = model.last_input_ids().len();
        // One attention per layer: tract's softmax, or the loader's fused attention (x86 with
        // AVX2 and FMA), whose output has a row per query: per mask in the head.
        let attentions = |graph: &str| {
            nodes
                .iter()
                .filter(|n| n.graph == graph && (n.op == "Softmax" || n.op == "BertlingAttention"))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            attentions("encoder").len(),
            manifest.num_layers as usize - 1,
            "{arch}"
        );
        let head = attentions("head");
        assert_eq!(head.len(), 1, "{arch}");
        if head[0].op == "BertlingAttention" {
            assert_eq!(head[0].shape[0], 3, "{arch}: {:?}", head[0].shape);
        }
        // In the head, only the keys, the values and the attention scores have a row per token;
        // every other product (queries, attention context, output projection, feed-forward,
        // masked-LM head) has a row per mask.
        let products: Vec<&Vec<usize>> = nodes
            .iter()
            .filter(|t| t.graph == "head" && (t.op == "OptMatMul" || t.op == "Int8Linear"))
            .map(|t| &t.shape)
            .collect();
        let per_token = products.iter().filter(|s| s.contains(&n)).count();
        assert!((1..=3).contains(&per_token), "{arch}: {products:?}");
        assert!(
            products.len() - per_token >= 6,
            "{arch}: {n} tokens, 3 masks: {products:?}"
        );
    }
}
