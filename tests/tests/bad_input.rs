//! Bad input gets a clear error and never a panic: broken model files, broken exports, and texts
//! without masks, too long, or with too many masks.

use std::path::{Path, PathBuf};

use bertling::format::{FormatError, FORMAT_VERSION};
use bertling::{Error, Model};
use bertling_tests::{
    compiled, compiled_int8, compiled_int8_grouped7, compiled_int8_rows12, fixture_dir, scratch_dir,
};

fn copy_fixture(arch: &str, name: &str) -> PathBuf {
    let dir = scratch_dir(&format!("bad-{}-{name}", std::process::id()));
    for entry in std::fs::read_dir(fixture_dir(arch)).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
    }
    dir
}

fn compile_err(dir: &Path) -> String {
    let out = dir.join("out.bertling");
    let err = bertling_tools::compile::compile(dir, &out).expect_err("compile should fail");
    assert!(!out.exists(), "a failed compile left {}", out.display());
    format!("{err:#}")
}

#[test]
fn missing_export_dir_and_missing_onnx() {
    let msg = compile_err(Path::new("/nonexistent/export"));
    assert!(msg.contains("not a directory"), "{msg}");
    let dir = copy_fixture("bert", "no-onnx");
    std::fs::remove_file(dir.join("model.onnx")).unwrap();
    assert!(compile_err(&dir).contains("no model.onnx"));
}

#[test]
fn truncated_and_non_onnx_files() {
    let dir = copy_fixture("distilbert", "truncated");
    let onnx = std::fs::read(dir.join("model.onnx")).unwrap();
    for cut in [0, 1, 17, onnx.len() / 3, onnx.len() / 2, onnx.len() - 1] {
        std::fs::write(dir.join("model.onnx"), &onnx[..cut]).unwrap();
        let msg = compile_err(&dir);
        assert!(!msg.is_empty(), "cut at {cut}");
    }
    std::fs::write(
        dir.join("model.onnx"),
        b"this is not an ONNX model at all, just text\n",
    )
    .unwrap();
    let msg = compile_err(&dir);
    assert!(msg.contains("model.onnx"), "{msg}");
}

#[test]
fn unsupported_architecture() {
    let dir = copy_fixture("bert", "gpt2");
    let cfg = std::fs::read_to_string(dir.join("config.json")).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&cfg).unwrap();
    v["model_type"] = "gpt2".into();
    std::fs::write(dir.join("config.json"), v.to_string()).unwrap();
    let msg = compile_err(&dir);
    assert!(msg.contains("unsupported architecture 'gpt2'"), "{msg}");

    v["model_type"] = "bert".into();
    v["architectures"] = serde_json::json!(["BertForSequenceClassification"]);
    std::fs::write(dir.join("config.json"), v.to_string()).unwrap();
    let msg = compile_err(&dir);
    assert!(msg.contains("not BertForMaskedLM"), "{msg}");
}

#[test]
fn onnx_of_another_shape_is_refused() {
    // DistilBERT's graph (vocabulary 5000) under BERT's config (4000): the output is not [1, S, vocab].
    let dir = copy_fixture("bert", "wrong-graph");
    std::fs::copy(
        fixture_dir("distilbert").join("model.onnx"),
        dir.join("model.onnx"),
    )
    .unwrap();
    let msg = compile_err(&dir);
    assert!(msg.contains("not f32 logits"), "{msg}");
}

#[test]
fn tokenizer_larger_than_the_model_vocabulary() {
    let dir = copy_fixture("distilbert", "big-tokenizer");
    let tok = std::fs::read_to_string(dir.join("tokenizer.json")).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&tok).unwrap();
    let vocab = v["model"]["vocab"]
        .as_object_mut()
        .expect("WordPiece vocab");
    let n = vocab.len();
    for i in 0..100_000 {
        vocab.insert(format!("extra{i}"), (n + i).into());
    }
    std::fs::write(dir.join("tokenizer.json"), v.to_string()).unwrap();
    let msg = compile_err(&dir);
    assert!(msg.contains("does not belong to this model"), "{msg}");
}

#[test]
fn model_file_errors() {
    let path = compiled("bert");
    let bytes = std::fs::read(&path).unwrap();

    match Model::load("/nonexistent/model.bertling") {
        Err(Error::Io { .. }) => {}
        other => panic!("{other:?}"),
    }
    // Not a model file: the ONNX export itself.
    match Model::from_bytes(&std::fs::read(fixture_dir("bert").join("model.onnx")).unwrap()) {
        Err(Error::Format(FormatError::BadMagic)) => {}
        other => panic!("{other:?}"),
    }
    // Truncations at many points, corruptions in every region.
    let step = (bytes.len() / 97).max(1);
    for cut in (0..bytes.len()).step_by(step) {
        assert!(
            Model::from_bytes(&bytes[..cut]).is_err(),
            "truncated at {cut}"
        );
    }
    for at in (0..bytes.len()).step_by(step) {
        let mut b = bytes.clone();
        b[at] ^= 0x5a;
        match Model::from_bytes(&b) {
            Err(Error::Format(_)) => {}
            other => panic!("corruption at {at}: {other:?}"),
        }
    }
    // A newer format version.
    let msg = Model::from_bytes(&relabelled(&bytes, FORMAT_VERSION + 1))
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains(&format!("version {}", FORMAT_VERSION + 1)),
        "{msg}"
    );
}

/// `bytes` with the header's format version set to `version` (and the header CRC recomputed).
fn relabelled(bytes: &[u8], version: u32) -> Vec<u8> {
    let mut b = bytes.to_vec();
    b[8..12].copy_from_slice(&version.to_le_bytes());
    let crc = crc32(&b[..60]);
    b[60..64].copy_from_slice(&crc.to_le_bytes());
    b
}

#[test]
fn a_graph_newer_than_its_header_is_refused() {
    // Relabelled as format 5, every check before the graph holds (checksums, the manifest's
    // masked-layer head, which needs 5): a rows12 int8 file still loads (its 12-bit panels need
    // format 3), a grouped7 file does not (its asymmetric codes need format 6), nor a default
    // (grouped8) file relabelled as 6 (its 8-bit codes need 7).
    for arch in ["albert", "distilbert"] {
        let bytes = std::fs::read(compiled_int8_rows12(arch)).unwrap();
        if let Err(e) = Model::from_bytes(&relabelled(&bytes, 5)) {
            panic!("{arch} int8 rows12 as format 5: {e}");
        }
        let bytes = std::fs::read(compiled_int8_grouped7(arch)).unwrap();
        assert!(Model::from_bytes(&bytes).is_ok(), "{arch} grouped7");
        match Model::from_bytes(&relabelled(&bytes, 5)) {
            Err(Error::Inconsistent(msg)) => assert!(
                msg.contains("says format 5") && msg.contains("needs format 6"),
                "{msg}"
            ),
            other => panic!("{arch} grouped7 as format 5: {other:?}"),
        }
        // Format 6 knew asymmetric 7-bit codes, not 8-bit ones.
        let bytes = std::fs::read(compiled_int8(arch)).unwrap();
        assert!(Model::from_bytes(&bytes).is_ok(), "{arch} grouped8");
        assert!(
            Model::from_bytes(&relabelled(&bytes, 7)).is_ok(),
            "{arch} grouped8 as 7"
        );
        match Model::from_bytes(&relabelled(&bytes, 6)) {
            Err(Error::Inconsistent(msg)) => assert!(
                msg.contains("says format 6") && msg.contains("needs format 7"),
                "{msg}"
            ),
            other => panic!("{arch} grouped8 as format 6: {other:?}"),
        }
    }
}

fn crc32(bytes: &[u8]) -> u32 {
    // CRC-32/IEEE, bitwise: independent of the crate the format uses.
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[test]
fn request_errors() {
    for arch in bertling_tests::ARCHS {
        let mut model = Model::load(compiled(arch)).unwrap();
        let max = model.manifest().max_tokens as usize;
        assert!(
            matches!(
                model.fill_mask("no mask here", 5),
                Err(Error::NoMask { .. })
            ),
            "{arch}"
        );
        assert!(
            matches!(model.fill_mask("", 5), Err(Error::NoMask { .. })),
            "{arch}"
        );
        let long = format!("{} [MASK].", "word ".repeat(2000));
        assert!(long.len() >= 10_000);
        match model.fill_mask(&long, 5) {
            Err(Error::TooLong { tokens, max: m }) => assert!(tokens > m && m == max, "{arch}"),
            other => panic!("{arch}: {other:?}"),
        }
        let many = "[MASK] ".repeat(bertling::MAX_MASKS + 1);
        assert!(
            matches!(model.fill_mask(&many, 5), Err(Error::TooManyMasks { .. })),
            "{arch}"
        );
        assert!(
            matches!(model.fill_mask("a [MASK]", 0), Err(Error::BadTopK { .. })),
            "{arch}"
        );
        assert!(
            matches!(
                model.fill_mask("a [MASK]", 10_000),
                Err(Error::BadTopK { .. })
            ),
            "{arch}"
        );
        // The model's own mask token works as well as the generic one, and errors leave the model usable.
        let own = format!("Hello {} world.", model.mask_token());
        let a = model.fill_mask(&own, 3).unwrap();
        let b = model.fill_mask("Hello [MASK] world.", 3).unwrap();
        assert_eq!(a, b, "{arch}");
        // Exactly at the limit still works.
        let mut n = 1;
        loop {
            let text = format!("{}[MASK]", "a ".repeat(n));
            match model.fill_mask(&text, 1) {
                Ok(_) => n += 1,
                Err(Error::TooLong { .. }) => break,
                Err(e) => panic!("{arch}: {e}"),
            }
            if n > max + 5 {
                panic!("{arch}: never too long");
            }
        }
        let at_limit = format!("{}[MASK]", "a ".repeat(n - 1));
        model.fill_mask(&at_limit, 1).unwrap();
        assert_eq!(
            model.last_input_ids().len(),
            max,
            "{arch}: the longest accepted text fills every position"
        );
    }
}
