//! What answers requests: the [`Engine`] trait, and [`ModelEngine`], the bertling runtime behind
//! it. Completion is wired here and only here: [`ModelEngine::complete`] calls
//! `bertling::Model::complete` with its default options (words of up to 2 pieces, at most 8
//! forward passes per request) and [`Engine::info`] reports `complete: true`.

use bertling_protocol::{ErrorCode, Info, Suggestion, Word, MAX_K, MAX_NAME, MAX_TEXT, VERSION};

/// Up to [`MAX_K`] suggestions, best first.
pub type Suggestions = heapless::Vec<Suggestion, MAX_K>;

/// Something that answers fill-mask and completion requests. The daemon calls it
/// from one worker thread, one request at a time.
pub trait Engine: Send {
    /// What this engine serves (for [`bertling_protocol::Request::Info`]).
    fn info(&self) -> Info;

    /// The `k` (1..=[`MAX_K`], checked by the caller) best words for the single mask in `text`.
    fn fill_mask(&mut self, text: &str, k: usize) -> Result<Suggestions, ErrorCode>;

    /// The `k` best continuations of `text`. The default answers [`ErrorCode::Unsupported`].
    fn complete(&mut self, text: &str, k: usize) -> Result<Suggestions, ErrorCode> {
        let _ = (text, k);
        Err(ErrorCode::Unsupported)
    }
}

/// The bertling runtime as an [`Engine`].
///
/// ```no_run
/// use bertling_kiosk::engine::{Engine, ModelEngine};
/// let model = bertling::Model::load("model.bertling")?;
/// let mut engine = ModelEngine::new(model);
/// let words = engine.fill_mask("Paris is the [MASK] of France.", 3).unwrap();
/// assert!(words.len() <= 3);
/// # Ok::<(), bertling::Error>(())
/// ```
pub struct ModelEngine {
    model: bertling::Model,
    name: heapless::String<MAX_NAME>,
}

impl ModelEngine {
    /// Wraps a loaded model.
    pub fn new(model: bertling::Model) -> ModelEngine {
        let name = truncate::<MAX_NAME>(model.manifest().architecture.model_type());
        ModelEngine { model, name }
    }
}

impl Engine for ModelEngine {
    fn info(&self) -> Info {
        Info {
            protocol: VERSION,
            model: self.name.clone(),
            max_text: MAX_TEXT as u16,
            max_k: MAX_K as u8,
            fill_mask: true,
            complete: true,
        }
    }

    fn fill_mask(&mut self, text: &str, k: usize) -> Result<Suggestions, ErrorCode> {
        let result = self.model.fill_mask(text, k).map_err(|e| {
            let code = error_code(&e);
            if code == ErrorCode::Internal {
                tracing::error!("fill-mask failed: {e}");
            }
            code
        })?;
        let mask = match result.masks.as_slice() {
            [one] => one,
            [] => return Err(ErrorCode::NoMask),
            _ => return Err(ErrorCode::TooManyMasks),
        };
        let mut out = Suggestions::new();
        for candidate in mask.candidates.iter().take(MAX_K) {
            let word =
                truncate::<{ bertling_protocol::MAX_WORD }>(self.model.token_str(candidate.token));
            let _ = out.push(Suggestion {
                word,
                probability: candidate.score,
            });
        }
        Ok(out)
    }

    /// Whole words for the end of `text` (the word being typed, or the next word after a space),
    /// best first, with `exp` of their score as the probability; see `bertling::complete`.
    fn complete(&mut self, text: &str, k: usize) -> Result<Suggestions, ErrorCode> {
        let options = bertling::CompleteOptions {
            k: k.min(MAX_K),
            ..Default::default()
        };
        let result = self.model.complete(text, &options).map_err(|e| {
            let code = error_code(&e);
            if code == ErrorCode::Internal {
                tracing::error!("completion failed: {e}");
            }
            code
        })?;
        let mut out = Suggestions::new();
        for s in result.suggestions.iter().take(MAX_K) {
            let _ = out.push(Suggestion {
                word: truncate::<{ bertling_protocol::MAX_WORD }>(&s.word),
                probability: s.probability(),
            });
        }
        Ok(out)
    }
}

/// The protocol's code for a runtime error.
pub fn error_code(error: &bertling::Error) -> ErrorCode {
    match error {
        bertling::Error::NoMask { .. } => ErrorCode::NoMask,
        bertling::Error::TooManyMasks { .. } => ErrorCode::TooManyMasks,
        bertling::Error::TooLong { .. } => ErrorCode::TextTooLong,
        bertling::Error::BadTopK { .. } => ErrorCode::BadK,
        _ => ErrorCode::Internal,
    }
}

/// `text` cut to at most `N` bytes at a character boundary.
pub fn truncate<const N: usize>(text: &str) -> heapless::String<N> {
    let mut end = text.len().min(N);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = heapless::String::new();
    let _ = out.push_str(&text[..end]);
    out
}

/// Short name for a [`Word`] built from a `&str`, cut to fit.
pub fn word(text: &str) -> Word {
    truncate(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_keeps_whole_characters() {
        assert_eq!(truncate::<4>("abcdef").as_str(), "abcd");
        assert_eq!(truncate::<4>("abé").as_str(), "abé");
        assert_eq!(truncate::<3>("abé").as_str(), "ab");
        assert_eq!(truncate::<3>("").as_str(), "");
    }
}
