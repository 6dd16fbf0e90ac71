//! `bertling tokenize`: the model's tokenization of texts, for checking against other tokenizers.

use std::io::{BufRead, Write};
use std::path::Path;

use anyhow::{Context, Result};
use bertling::Model;

/// Tokenizes `text`, or with `--jsonl` every JSON string read line by line from stdin; prints one
/// JSON object per text: `{"ids": [...], "offsets": [[start, end], ...]}` (character offsets into
/// the text after `[MASK]` is replaced by the model's mask token, special tokens included).
pub fn run(model: &Path, text: Option<&str>) -> Result<()> {
    let mut model = Model::load(model)?;
    let mut out = crate::output::stdout();
    let mut one = |text: &str, out: &mut dyn Write| -> Result<()> {
        let ids = model.encode(text)?.to_vec();
        let mut substituted = String::new();
        bertling::text::substitute_mask(text, model.mask_token(), &mut substituted);
        let enc = model
            .tokenizer()
            .encode_char_offsets(substituted.as_str(), true)
            .map_err(|e| anyhow::anyhow!("tokenizer: {e}"))?;
        let v = serde_json::json!({"ids": ids, "offsets": enc.get_offsets()});
        writeln!(out, "{v}")?;
        Ok(())
    };
    match text {
        Some(t) => one(t, &mut out)?,
        None => {
            for (n, line) in std::io::stdin().lock().lines().enumerate() {
                let line = line?;
                let text: String = serde_json::from_str(&line)
                    .with_context(|| format!("stdin line {} is not a JSON string", n + 1))?;
                one(&text, &mut out)?;
            }
        }
    }
    Ok(())
}
