//! Properties of compiled model files: the tensor store holds each distinct tensor once, aligned;
//! the attention mask is folded away.

use bertling::format::{ModelFile, SectionKind, ALIGN};
use bertling_tests::{compiled, ARCHS};

#[test]
fn every_tensor_is_stored_once_and_aligned() {
    for arch in ARCHS {
        let bytes = std::fs::read(compiled(arch)).unwrap();
        let file = ModelFile::parse(&bytes).unwrap();
        let section = file
            .manifest
            .section(SectionKind::Tensors)
            .expect("tensor section");
        let store = file.section(SectionKind::Tensors).unwrap();
        let table = &file.manifest.tensors;
        assert!(table.len() > 10, "{arch}: {} tensors", table.len());
        let mut seen = std::collections::HashSet::new();
        for b in table {
            assert_eq!((section.offset + b.offset) % ALIGN as u64, 0, "{arch}");
            let blob = &store[b.offset as usize..(b.offset + b.len) as usize];
            assert!(seen.insert(blob), "{arch}: a tensor is stored twice");
        }
    }
}

/// bertling never pads a sequence, so the compiler folds the attention mask away: no file asks
/// for one, and no planned node masks scores or guards a softmax against NaN (what a fed mask
/// costs: see tools/src/compile/mask.rs). The answers themselves are checked against PyTorch
/// with the mask in parity_pytorch.rs.
#[test]
fn the_attention_mask_is_folded_away() {
    use bertling::format::InputKind;
    use bertling::Model;
    use bertling_tests::compiled_int8;
    for arch in ARCHS {
        for path in [compiled(arch), compiled_int8(arch)] {
            let mut model = Model::load(&path).unwrap();
            let inputs = &model.manifest().inputs;
            assert!(inputs.contains(&InputKind::InputIds), "{arch}: {inputs:?}");
            assert!(
                !inputs.contains(&InputKind::AttentionMask),
                "{arch}: {inputs:?}"
            );
            let text = format!("the {} is a test of the mask", model.mask_token());
            let nodes = model.profile(&text, 1).unwrap();
            let ops: Vec<&str> = nodes.iter().map(|n| n.op.as_str()).collect();
            // The attention's softmax: tract's, or inside the loader's fused attention (x86 with
            // AVX2 and FMA; runtime/src/attention.rs).
            assert!(
                ops.contains(&"Softmax") || ops.contains(&"BertlingAttention"),
                "{arch}: {ops:?}"
            );
            for masking in ["Iff", "IsNan", "Where"] {
                assert!(
                    !ops.contains(&masking),
                    "{arch}: a {masking} is planned: {ops:?}"
                );
            }
        }
    }
}
