//! int8 model files on the four tiny fixtures: what the plan runs, how close the answers stay to
//! the fp32 file of the same export (itself checked against PyTorch in parity_pytorch.rs), and the
//! size they save.

use bertling::format::{ModelFile, Precision, SectionKind};
use bertling::Model;
use bertling_tests::{
    compiled, compiled_int8, compiled_int8_grouped7, compiled_int8_rows12, references, ARCHS,
};

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

#[test]
fn no_planned_node_computes_from_weights_alone() {
    for arch in ARCHS {
        for path in [
            compiled_int8(arch),
            compiled_int8_rows12(arch),
            compiled(arch),
        ] {
            let model = Model::load(&path).unwrap();
            let weight_only = model.weight_only_nodes();
            assert!(
                weight_only.is_empty(),
                "{arch} {}: {weight_only:?}",
                model.manifest().precision
            );
        }
    }
}

#[test]
fn rows12_files_use_the_12_bit_kernel() {
    for arch in ARCHS {
        let model = Model::load(compiled_int8_rows12(arch)).unwrap();
        assert_eq!(model.manifest().precision, Precision::Int8);
        let kernels = model.kernels();
        assert!(
            kernels.iter().any(|k| k.starts_with("bertling_panel_")),
            "{arch}: {kernels:?}"
        );
        assert!(
            !kernels
                .iter()
                .any(|k| k.starts_with("bertling_a7_") || k.starts_with("bertling_a8_")),
            "{arch}: {kernels:?}"
        );
        let fp32 = Model::load(compiled(arch)).unwrap();
        assert_eq!(fp32.manifest().precision, Precision::F32);
        assert!(!fp32.kernels().iter().any(|k| k.starts_with("bertling_")));
    }
}

#[test]
fn grouped7_files_use_the_7_bit_kernel() {
    for arch in ARCHS {
        let model = Model::load(compiled_int8_grouped7(arch)).unwrap();
        let kernels = model.kernels();
        assert!(
            kernels.iter().any(|k| k.starts_with("bertling_a7_")),
            "{arch}: {kernels:?}"
        );
        // The head (the last layer at the masks and the masked-LM head) keeps 12-bit codes.
        assert!(
            kernels.iter().any(|k| k.starts_with("bertling_panel_")),
            "{arch}: {kernels:?}"
        );
        assert_eq!(model.manifest().precision, Precision::Int8);
    }
}

#[test]
fn default_int8_files_use_the_8_bit_kernel() {
    for arch in ARCHS {
        let model = Model::load(compiled_int8(arch)).unwrap();
        let kernels = model.kernels();
        assert!(
            kernels
                .iter()
                .any(|k| k == bertling::int8::a8::kernel_name()),
            "{arch}: {kernels:?}"
        );
        assert!(
            !kernels.iter().any(|k| k.starts_with("bertling_a7_")),
            "{arch}: {kernels:?}"
        );
        // The head (the last layer at the masks and the masked-LM head) keeps 12-bit codes.
        assert!(
            kernels.iter().any(|k| k.starts_with("bertling_panel_")),
            "{arch}: {kernels:?}"
        );
        assert_eq!(model.manifest().precision, Precision::Int8);
    }
}

#[test]
fn int8_answers_stay_close_to_fp32() {
    for (arch, file) in ARCHS.iter().flat_map(|a| {
        [
            (*a, compiled_int8(a)),
            (*a, compiled_int8_rows12(a)),
            (*a, compiled_int8_grouped7(a)),
        ]
    }) {
        let mut int8 = Model::load(&file).unwrap();
        let mut fp32 = Model::load(compiled(arch)).unwrap();
        let (mut masks, mut top1_same, mut min_cos) = (0, 0, 1f64);
        for case in references(arch).cases {
            let a = int8.fill_mask(&case.text, 5).unwrap();
            let b = fp32.fill_mask(&case.text, 5).unwrap();
            assert_eq!(int8.last_input_ids(), fp32.last_input_ids());
            for i in 0..a.masks.len() {
                let cos = cosine(int8.last_logits(i).unwrap(), fp32.last_logits(i).unwrap());
                min_cos = min_cos.min(cos);
                masks += 1;
                top1_same +=
                    (a.masks[i].candidates[0].token == b.masks[i].candidates[0].token) as usize;
            }
        }
        let name = file.file_name().unwrap().to_string_lossy();
        eprintln!("{name}: {masks} masks, top-1 agreement {top1_same}, min cosine {min_cos:.5}");
        // Hidden size 32, random weights: the coarsest case (a row has few values to spread its
        // error over), coarser still for 7-bit codes; the base-size and real-model figures are in
        // BENCHMARKS.md.
        let (cos_bar, top1_tenths) = if name.contains("grouped7") {
            (0.85, 7)
        } else if name.contains("grouped8") {
            // Groups of 32 are whole rows here: 8-bit codes per row, coarser than 12-bit ones.
            (0.92, 8)
        } else {
            (0.96, 8)
        };
        assert!(min_cos >= cos_bar, "{name}: cosine {min_cos}");
        assert!(
            top1_same * 10 >= masks * top1_tenths,
            "{name}: top-1 {top1_same}/{masks}"
        );
    }
}

#[test]
fn int8_tensors_take_about_a_quarter_of_fp32() {
    for arch in ARCHS {
        let size = |path| {
            let bytes = std::fs::read(path).unwrap();
            let file = ModelFile::parse(&bytes).unwrap();
            file.section(SectionKind::Tensors).unwrap().len() as f64
        };
        let (a, b) = (size(compiled_int8(arch)), size(compiled(arch)));
        assert!(a <= 0.35 * b, "{arch}: int8 tensors {a} bytes, fp32 {b}");
    }
}

#[test]
fn a_tied_output_projection_shares_the_word_embeddings_bytes() {
    // The four families tie the vocabulary projection to the word embeddings: in an int8 file the
    // projection (in the head) reads the i8 table the encoder's lookup reads, stored once. A
    // second copy (say, in another layout) would be a second blob about as large as the table.
    for arch in ARCHS {
        let bytes = std::fs::read(compiled_int8(arch)).unwrap();
        let file = ModelFile::parse(&bytes).unwrap();
        let mut sizes: Vec<u64> = file.manifest.tensors.iter().map(|b| b.len).collect();
        sizes.sort_unstable_by(|a, b| b.cmp(a));
        assert!(
            sizes[1] * 10 < sizes[0] * 9,
            "{arch}: the two largest tensors are {} and {} bytes",
            sizes[0],
            sizes[1]
        );
    }
}

#[test]
fn two_threads_answer_as_one() {
    // With a thread pool a request runs on the pool, and products split their output channels
    // between threads: the logits must not change by a bit.
    use bertling::LoadOptions;
    for arch in ARCHS {
        for file in [
            compiled(arch),
            compiled_int8(arch),
            compiled_int8_rows12(arch),
            compiled_int8_grouped7(arch),
        ] {
            let mut one = Model::load_with(&file, &LoadOptions { threads: 1 }).unwrap();
            let mut two = Model::load_with(&file, &LoadOptions { threads: 2 }).unwrap();
            for case in references(arch).cases.iter().take(8) {
                let a = one.fill_mask(&case.text, 5).unwrap();
                let b = two.fill_mask(&case.text, 5).unwrap();
                assert_eq!(a.masks.len(), b.masks.len());
                for i in 0..a.masks.len() {
                    assert_eq!(
                        one.last_logits(i),
                        two.last_logits(i),
                        "{arch} {}: {:?}",
                        file.display(),
                        case.text
                    );
                }
            }
        }
    }
}
