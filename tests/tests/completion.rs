//! Text completion against the committed brute-force references
//! (`models/fixtures/<arch>/completion_reference.json`, made by `bertling_models.completion`: every
//! candidate word of at most `max_pieces` (2, or 3 for long prefixes) pieces consistent with the
//! prefix scored exhaustively with the PyTorch model): the top 5 words equal, in order, for every
//! prefix of all four families, with word lists and stop lists too; and completion never panics,
//! whatever the text and options.

use bertling::complete::{
    CompleteOptions, PieceStyle, WordFilter, MAX_PASSES, MAX_PIECES, MAX_SUGGESTIONS,
};
use bertling::{Error, Model};
use bertling_tests::{fixture_dir, ARCHS};
use serde::Deserialize;

/// The fixture's model file; the references are PyTorch's fp32 numbers, so it must be fp32.
fn load(arch: &str) -> Model {
    let model = Model::load(bertling_tests::compiled(arch)).unwrap();
    assert_eq!(
        model.manifest().precision,
        bertling::format::Precision::F32,
        "{arch}: the completion references need the fp32 fixture"
    );
    model
}

/// Scores are sums of two log-softmax values, f32 in tract vs float32 in PyTorch.
const SCORE_TOLERANCE: f64 = 2e-4;

#[derive(Debug, Deserialize, Default)]
struct RefOptions {
    only: Option<Vec<String>>,
    prefer: Option<Vec<String>>,
    bias: Option<f32>,
    stop: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
struct RefCase {
    text: String,
    prefix: String,
    prefix_start: usize,
    words: Vec<String>,
    scores: Vec<f64>,
    pieces: Vec<Vec<u32>>,
    #[serde(default)]
    options: RefOptions,
    max_pieces: usize,
}

#[derive(Debug, Deserialize)]
struct Reference {
    architecture: String,
    top_k: usize,
    style: String,
    start_pieces: usize,
    cont_pieces: usize,
    cases: Vec<RefCase>,
}

fn reference(arch: &str) -> Reference {
    let path = fixture_dir(arch).join("completion_reference.json");
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Checks one family; returns (cases, cases whose default-budget answer was exact, passes of the
/// default budget summed, passes the proofs took summed, the most one proof took).
fn check_arch(arch: &str) -> (usize, usize, u32, u32, u32) {
    let refs = reference(arch);
    assert_eq!(refs.architecture, arch);
    let mut model = load(arch);
    let style = match model.lexicon().style() {
        Some(PieceStyle::WordPiece) => "wordpiece",
        Some(PieceStyle::Metaspace) => "metaspace",
        Some(PieceStyle::ByteLevel) => "bytelevel",
        None => "none",
    };
    assert_eq!(style, refs.style, "{arch}: piece style");
    assert_eq!(
        model.lexicon().counts(),
        (refs.start_pieces, refs.cont_pieces),
        "{arch}: word-start and continuation pieces (Rust vs the Python vocabulary walk)"
    );
    let (mut exact_default, mut passes_default) = (0, 0);
    let (mut passes_exact, mut passes_exact_max) = (0, 0);
    let mut inexact_but_equal = 0;
    for case in &refs.cases {
        let list =
            |words: &Option<Vec<String>>| words.as_ref().map(|w| model.word_list(w).unwrap());
        let only = list(&case.options.only);
        let prefer = list(&case.options.prefer);
        let stop = list(&case.options.stop);
        let words = match (&only, &prefer) {
            (Some(l), _) => WordFilter::Only(l),
            (None, Some(l)) => WordFilter::Prefer(l, case.options.bias.unwrap_or(0.0)),
            _ => WordFilter::Any,
        };
        let exhaustive = CompleteOptions {
            k: refs.top_k,
            max_pieces: case.max_pieces,
            max_passes: MAX_PASSES,
            words,
            stop: stop.as_ref(),
        };
        let got = model
            .complete(&case.text, &exhaustive)
            .unwrap_or_else(|e| panic!("{arch}: {:?}: {e}", case.text));
        let ctx = format!("{arch}: {:?} ({:?})", case.text, case.options);
        assert!(
            got.exact,
            "{ctx}: not proven exact in {} passes",
            got.passes
        );
        passes_exact += got.passes;
        passes_exact_max = passes_exact_max.max(got.passes);
        assert_eq!(got.prefix.as_str(), case.prefix, "{ctx}: prefix");
        assert_eq!(got.prefix_start, case.prefix_start, "{ctx}: prefix start");
        let words: Vec<&str> = got.suggestions.iter().map(|s| s.word.as_str()).collect();
        assert_eq!(words, case.words, "{ctx}: top-{} words", refs.top_k);
        for ((s, want), pieces) in got.suggestions.iter().zip(&case.scores).zip(&case.pieces) {
            assert!(
                (s.score as f64 - want).abs() <= SCORE_TOLERANCE,
                "{ctx}: {} scored {} vs PyTorch {want}",
                s.word,
                s.score
            );
            assert_eq!(
                s.pieces.as_slice(),
                pieces.as_slice(),
                "{ctx}: pieces of {}",
                s.word
            );
        }
        // The default budget: whenever it proves its answer exact, it is the same answer.
        let default = CompleteOptions {
            max_passes: CompleteOptions::default().max_passes,
            ..exhaustive
        };
        let quick = model.complete(&case.text, &default).unwrap();
        passes_default += quick.passes;
        if quick.exact {
            exact_default += 1;
            assert_eq!(quick.suggestions, got.suggestions, "{ctx}: default budget");
        } else if quick.suggestions == got.suggestions {
            inexact_but_equal += 1;
        }
    }
    eprintln!(
        "{arch}: {inexact_but_equal} default-budget answers not proven exact were the exact answer anyway"
    );
    (
        refs.cases.len(),
        exact_default,
        passes_default,
        passes_exact,
        passes_exact_max,
    )
}

#[test]
fn completion_matches_the_pytorch_brute_force() {
    let mut total = 0;
    for arch in ARCHS {
        let (cases, exact, passes, proof, proof_max) = check_arch(arch);
        eprintln!(
            "{arch}: {cases} prefixes top-5 identical (proofs took {:.1} passes, at most \
             {proof_max}); the default budget of 8 was exact on {exact}, {:.1} passes per request",
            proof as f64 / cases as f64,
            passes as f64 / cases as f64
        );
        total += cases;
    }
    assert!(total >= 100, "only {total} prefixes");
}

/// xorshift64*: a reproducible stream without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn char(&mut self) -> char {
        const POOLS: &[(u32, u32)] = &[
            (0x20, 0x7e),       // ASCII
            (0x61, 0x7a),       // a-z, often
            (0x61, 0x7a),       //
            (0x09, 0x0d),       // tab, newlines
            (0x00, 0x1f),       // controls
            (0xa0, 0x17f),      // Latin-1, Latin Extended-A
            (0x300, 0x36f),     // combining marks
            (0x370, 0x3ff),     // Greek
            (0x4e00, 0x4e80),   // CJK
            (0x1f600, 0x1f64f), // emoji
            (0x200b, 0x200d),   // zero-width
            (0xfff0, 0xffff),   // specials
            (0x0, 0x10ffff),    // anything
        ];
        let (a, b) = POOLS[self.below(POOLS.len() as u64) as usize];
        loop {
            let c = a + self.below((b - a + 1) as u64) as u32;
            if let Some(c) = char::from_u32(c) {
                return c;
            }
        }
    }
}

#[test]
fn never_panics_on_random_text_and_options() {
    let mut rng = Rng(0x5eed_c0de_1234_5678);
    for arch in ARCHS {
        let mut model = load(arch);
        let menu = model.word_list(["card", "Café", "value", "ß", ""]).unwrap();
        for i in 0..150 {
            let len = rng.below(if i % 10 == 0 { 600 } else { 24 });
            let mut text: String = (0..len).map(|_| rng.char()).collect();
            if i % 7 == 0 {
                text.push_str(["[MASK]", "<mask>", " [MASK] wor", "##", "▁", "Ġ"][i % 6]);
            }
            let options = CompleteOptions {
                k: 1 + rng.below(MAX_SUGGESTIONS as u64) as usize,
                max_pieces: 1 + rng.below(MAX_PIECES as u64) as usize,
                max_passes: MAX_PIECES + rng.below(12) as usize,
                words: match rng.below(3) {
                    0 => WordFilter::Any,
                    1 => WordFilter::Only(&menu),
                    _ => WordFilter::Prefer(&menu, 2.0),
                },
                stop: (rng.below(2) == 0).then_some(&menu),
            };
            match model.complete(&text, &options) {
                Ok(c) => {
                    assert!(c.suggestions.len() <= options.k);
                    assert!(c.passes as usize <= options.max_passes);
                    assert!(text.is_char_boundary(c.prefix_start));
                    for s in &c.suggestions {
                        assert!(
                            s.word.starts_with(c.prefix.as_str()),
                            "{arch}: {:?}: {} does not start with {:?}",
                            text,
                            s.word,
                            c.prefix
                        );
                        assert!(s.score.is_finite() && !s.pieces.is_empty());
                    }
                }
                Err(Error::TooLong { .. } | Error::TooManyMasks { .. }) => {}
                Err(e) => panic!("{arch}: {text:?}: unexpected error {e}"),
            }
        }
    }
}

#[test]
fn bad_options_are_errors() {
    let mut model = load("bert");
    let bad = [
        CompleteOptions {
            k: 0,
            ..Default::default()
        },
        CompleteOptions {
            k: MAX_SUGGESTIONS + 1,
            ..Default::default()
        },
        CompleteOptions {
            max_pieces: 0,
            ..Default::default()
        },
        CompleteOptions {
            max_pieces: MAX_PIECES + 1,
            max_passes: 64,
            ..Default::default()
        },
        CompleteOptions {
            max_pieces: 3,
            max_passes: 2,
            ..Default::default()
        },
        CompleteOptions {
            max_passes: MAX_PASSES + 1,
            ..Default::default()
        },
    ];
    for o in bad {
        assert!(model.complete("hello wor", &o).is_err(), "{o:?}");
    }
    let list = model.word_list(["x"]).unwrap();
    let o = CompleteOptions {
        words: WordFilter::Prefer(&list, f32::NAN),
        ..Default::default()
    };
    assert!(matches!(
        model.complete("hello", &o),
        Err(Error::BadOptions(_))
    ));
    let long = "word ".repeat(1000);
    assert!(matches!(
        model.complete(&long, &CompleteOptions::default()),
        Err(Error::TooLong { .. })
    ));
}

#[test]
fn single_piece_words_take_one_forward_pass() {
    let mut model = load("distilbert");
    let o = CompleteOptions {
        max_pieces: 1,
        max_passes: 1,
        ..Default::default()
    };
    for text in ["", "Please insert your ca", "The ", "Hello, wor"] {
        let c = model.complete(text, &o).unwrap();
        assert_eq!(c.passes, 1, "{text:?}");
        assert!(c.exact);
        assert_eq!(c.suggestions.len(), 5, "{text:?}: {:?}", c.suggestions);
    }
}

#[test]
fn word_lists_restrict_bias_and_stop() {
    let mut model = load("distilbert");
    let menu = model.word_list(["Card", "cash", "CANCEL"]).unwrap();
    assert_eq!(menu.words(), ["cancel", "card", "cash"]);
    let o = CompleteOptions {
        words: WordFilter::Only(&menu),
        ..Default::default()
    };
    let c = model.complete("Please insert your ca", &o).unwrap();
    assert!(!c.suggestions.is_empty());
    assert!(c.suggestions.iter().all(|s| menu.contains(&s.word)));
    let plain = model
        .complete("Please insert your ca", &CompleteOptions::default())
        .unwrap();
    let stop = model
        .word_list([plain.suggestions[0].word.as_str()])
        .unwrap();
    let o = CompleteOptions {
        stop: Some(&stop),
        ..Default::default()
    };
    let c = model.complete("Please insert your ca", &o).unwrap();
    assert!(c
        .suggestions
        .iter()
        .all(|s| s.word != plain.suggestions[0].word));
    assert_eq!(c.suggestions[0].word, plain.suggestions[1].word);
}

#[test]
fn the_command_line_prints_what_the_api_answers() {
    let model_path = bertling_tests::compiled("roberta");
    let mut model = load("roberta");
    let text = "Please insert your ca";
    let want = model.complete(text, &CompleteOptions::default()).unwrap();
    let out = std::process::Command::new(bertling_tests::bertling_bin())
        .arg("complete")
        .arg(&model_path)
        .arg(text)
        .arg("--json")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let words: Vec<&str> = got["suggestions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["word"].as_str().unwrap())
        .collect();
    let want_words: Vec<&str> = want.suggestions.iter().map(|s| s.word.as_str()).collect();
    assert_eq!(words, want_words);
    assert_eq!(got["prefix"], "ca");
    assert_eq!(
        got["suggestions"][0]["text"],
        format!("Please insert your {}", words[0])
    );
    let bad = std::process::Command::new(bertling_tests::bertling_bin())
        .arg("complete")
        .arg(&model_path)
        .arg(text)
        .args(["-k", "0"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("top-k must be between 1 and 16"));
}
