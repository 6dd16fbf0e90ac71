//! Shared helpers for the integration tests: where the fixtures are, compiling them once, reading
//! the committed references, finding the `bertling` binary.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use bertling::format::Precision;
use bertling_tools::compile::Activations;
use serde::Deserialize;

/// The four tiny fixture families, by folder name under `models/fixtures/`.
pub const ARCHS: [&str; 4] = ["albert", "distilbert", "bert", "roberta"];

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// A fixture's export directory.
pub fn fixture_dir(arch: &str) -> PathBuf {
    repo_root().join("models/fixtures").join(arch)
}

/// A scratch directory under target/ for this test binary.
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = repo_root().join("target/test-scratch").join(name);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

static COMPILE_LOCK: Mutex<()> = Mutex::new(());

/// The fixture compiled into an fp32 model file (once per test process): the export's numbers,
/// for parity with PyTorch and onnxruntime.
pub fn compiled(arch: &str) -> PathBuf {
    compiled_as(arch, Precision::F32, Activations::Rows12)
}

/// The fixture compiled with the default precision, int8, and the default activations, 8-bit
/// codes per 64 inputs (once per test process).
pub fn compiled_int8(arch: &str) -> PathBuf {
    compiled_as(arch, Precision::Int8, Activations::default())
}

/// The fixture compiled to int8 with `--int8-activations rows12` (once per test process).
pub fn compiled_int8_rows12(arch: &str) -> PathBuf {
    compiled_as(arch, Precision::Int8, Activations::Rows12)
}

/// The fixture compiled to int8 with `--int8-activations grouped7` (once per test process).
pub fn compiled_int8_grouped7(arch: &str) -> PathBuf {
    compiled_as(arch, Precision::Int8, Activations::Grouped7)
}

fn compiled_as(arch: &str, precision: Precision, activations: Activations) -> PathBuf {
    let _guard = COMPILE_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let tag = match (precision, activations) {
        (Precision::F32, _) => "",
        (_, Activations::Rows12) => ".rows12",
        (_, Activations::Grouped7) => ".grouped7",
        (_, Activations::Grouped8) => ".grouped8",
    };
    let out = compiled_dir().join(format!("{arch}.{precision}{tag}.bertling"));
    if !out.exists() {
        let options = bertling_tools::compile::Options {
            precision,
            activations,
            // Hidden size 32 and random weights: 7-bit codes in groups of 32 values keep the
            // logits' direction to ~0.97 (base-size figures in BENCHMARKS.md); the default
            // files keep the compiler's own guard.
            min_int8_cosine: match activations {
                Activations::Grouped7 => 0.95,
                Activations::Rows12 | Activations::Grouped8 => {
                    bertling_tools::compile::Options::default().min_int8_cosine
                }
            },
        };
        bertling_tools::compile::compile_with(&fixture_dir(arch), &out, &options)
            .unwrap_or_else(|e| panic!("compiling the {arch} fixture ({precision}): {e:#}"));
    }
    out
}

/// This test process's compiled fixtures, emptied on first use: a directory named after the process
/// id may hold files an earlier process with the same id (and an older compiler) left.
fn compiled_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = scratch_dir(&format!("compiled-{}", std::process::id()));
        std::fs::remove_dir_all(&dir).expect("empty the compiled fixtures' dir");
        std::fs::create_dir_all(&dir).expect("create the compiled fixtures' dir");
        dir
    })
}

/// The `bertling` binary: $BERTLING_BIN, else target/debug/bertling (built by scripts/test.sh).
pub fn bertling_bin() -> PathBuf {
    let bin = std::env::var_os("BERTLING_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/debug/bertling"));
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p bertling-tools` first",
        bin.display()
    );
    bin
}

/// One pipeline prediction, as transformers' fill-mask pipeline returned it.
#[derive(Debug, Deserialize)]
pub struct RefPrediction {
    pub token: u32,
    pub token_str: String,
    pub score: f64,
    pub sequence: String,
}

/// The pipeline's answer for one mask.
#[derive(Debug, Deserialize)]
pub struct RefMask {
    pub position: u32,
    pub top: Vec<RefPrediction>,
}

/// One reference sentence.
#[derive(Debug, Deserialize)]
pub struct RefCase {
    pub text: String,
    pub input_ids: Vec<u32>,
    pub mask_positions: Vec<u32>,
    pub masks: Vec<RefMask>,
}

/// A fixture's `references.json` (made with PyTorch and transformers' pipeline).
#[derive(Debug, Deserialize)]
pub struct References {
    pub architecture: String,
    pub mask_token: String,
    pub cases: Vec<RefCase>,
}

/// Reads a fixture's references.
pub fn references(arch: &str) -> References {
    let path = fixture_dir(arch).join("references.json");
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// One tokenizer reference entry (Python `tokenizers`).
#[derive(Debug, Deserialize)]
pub struct TokenizerCase {
    pub text: String,
    pub ids: Vec<u32>,
    pub offsets: Vec<(usize, usize)>,
}

/// A fixture's `tokenizer_reference.json`.
pub fn tokenizer_reference(arch: &str) -> Vec<TokenizerCase> {
    let path = fixture_dir(arch).join("tokenizer_reference.json");
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
