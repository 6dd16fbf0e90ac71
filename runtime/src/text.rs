//! Text handling around the tokenizer: the generic mask spelling and Hugging Face's decoding clean-up.

/// The mask spelling accepted for every model, whatever its own mask token.
pub const GENERIC_MASK: &str = "[MASK]";

/// Writes `text` into `out` with every generic `[MASK]` replaced by the model's own mask token.
/// `out` is cleared first and reused, so a warmed-up buffer does not allocate.
///
/// ```
/// let mut out = String::new();
/// bertling::text::substitute_mask("a [MASK] b", "<mask>", &mut out);
/// assert_eq!(out, "a <mask> b");
/// ```
pub fn substitute_mask(text: &str, model_mask: &str, out: &mut String) {
    out.clear();
    if model_mask == GENERIC_MASK {
        out.push_str(text);
        return;
    }
    let mut rest = text;
    while let Some(at) = rest.find(GENERIC_MASK) {
        out.push_str(&rest[..at]);
        out.push_str(model_mask);
        rest = &rest[at + GENERIC_MASK.len()..];
    }
    out.push_str(rest);
}

/// Hugging Face's `clean_up_tokenization`: removes the spaces decoding leaves before punctuation
/// and English contractions, applied when the tokenizer's `clean_up_tokenization_spaces` is set.
///
/// ```
/// assert_eq!(bertling::text::clean_up_tokenization("i don ' t know , do you ?"), "i don't know, do you?");
/// ```
pub fn clean_up_tokenization(s: &str) -> String {
    const RULES: [(&str, &str); 10] = [
        (" .", "."),
        (" ?", "?"),
        (" !", "!"),
        (" ,", ","),
        (" ' ", "'"),
        (" n't", "n't"),
        (" 'm", "'m"),
        (" 's", "'s"),
        (" 've", "'ve"),
        (" 're", "'re"),
    ];
    let mut out = s.to_string();
    for (from, to) in RULES {
        if out.contains(from) {
            out = out.replace(from, to);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substitution_keeps_everything_else() {
        let mut out = String::new();
        substitute_mask("[MASK][MASK] x [MASK", "<mask>", &mut out);
        assert_eq!(out, "<mask><mask> x [MASK");
        substitute_mask("no mask", "<mask>", &mut out);
        assert_eq!(out, "no mask");
        substitute_mask("é [MASK] 😀", "[MASK]", &mut out);
        assert_eq!(out, "é [MASK] 😀");
    }
}
