//! Properties of compiled model files: the tensor store holds each distinct tensor once, aligned.

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
