//! Token ids (and character offsets) equal those of the Python `tokenizers` library on the same
//! tokenizer.json, for every committed case (accents, CJK, emoji, long words, spaces, masks, empty).

use bertling::Model;
use bertling_tests::{compiled, tokenizer_reference, ARCHS};

fn check_arch(arch: &str) {
    let cases = tokenizer_reference(arch);
    assert!(
        cases.len() >= 200,
        "{arch}: only {} tokenizer cases",
        cases.len()
    );
    let mut model = Model::load(compiled(arch)).unwrap();
    let mut substituted = String::new();
    for case in &cases {
        let ids = model
            .encode(&case.text)
            .unwrap_or_else(|e| panic!("{arch}: {:?}: {e}", case.text))
            .to_vec();
        assert_eq!(ids, case.ids, "{arch}: ids of {:?}", case.text);
        bertling::text::substitute_mask(&case.text, model.mask_token(), &mut substituted);
        let enc = model
            .tokenizer()
            .encode_char_offsets(substituted.as_str(), true)
            .unwrap();
        assert_eq!(
            enc.get_offsets(),
            case.offsets.as_slice(),
            "{arch}: offsets of {:?}",
            case.text
        );
    }
}

#[test]
fn tokenizers_match_python() {
    for arch in ARCHS {
        check_arch(arch);
    }
}
