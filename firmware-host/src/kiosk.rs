//! The kiosk's front-panel logic, shared by the simulator and the Pi's own panel: what was
//! typed, which request is current, what the display shows, what a key press picks.
//!
//! ```
//! use bertling_kiosk::kiosk::Kiosk;
//! use bertling_protocol::{Request, Response, Suggestion};
//!
//! let mut kiosk = Kiosk::new("[MASK]", 3);
//! let (id, request) = kiosk.type_str("a cup of t").unwrap();
//! // The partial word "t" is what the mask replaces.
//! assert!(matches!(&request, Request::FillMask { text, .. } if text == "a cup of [MASK]"));
//! let mut list = heapless::Vec::new();
//! for word in ["coffee", "tea"] {
//!     list.push(Suggestion { word: word.try_into().unwrap(), probability: 0.4 }).unwrap();
//! }
//! kiosk.on_reply(id, Response::Suggestions(list));
//! assert_eq!(kiosk.suggestions(), ["tea", "coffee"]); // words matching "t" first
//! kiosk.pick(0);
//! assert_eq!(kiosk.typed(), "a cup of tea ");
//! assert_eq!(kiosk.lines::<16, 2>(), ["a cup of tea _", "1:tea 2:coffee"]);
//! ```

use bertling_protocol::{Request, Response, Text, MAX_TEXT};

/// Front-panel state.
pub struct Kiosk {
    typed: String,
    mask: String,
    k: u8,
    next_id: u32,
    current: Option<u32>,
    suggestions: Vec<String>,
    status: String,
}

impl Kiosk {
    /// A blank panel; `mask` is the mask spelling to send (`[MASK]` works for every model),
    /// `k` the number of suggestions to ask for.
    pub fn new(mask: &str, k: u8) -> Kiosk {
        Kiosk {
            typed: String::new(),
            mask: mask.to_string(),
            k,
            next_id: 1,
            current: None,
            suggestions: Vec::new(),
            status: String::new(),
        }
    }

    /// What was typed.
    pub fn typed(&self) -> &str {
        &self.typed
    }

    /// The suggestions shown, best first (words that continue the partial word first).
    pub fn suggestions(&self) -> &[String] {
        &self.suggestions
    }

    /// The last error, if the last reply was one.
    pub fn status(&self) -> &str {
        &self.status
    }

    /// The id of the request whose answer is awaited.
    pub fn waiting_for(&self) -> Option<u32> {
        self.current
    }

    /// Types characters; returns the request to send (it supersedes the previous one).
    pub fn type_str(&mut self, text: &str) -> Option<(u32, Request)> {
        for c in text.chars() {
            if self.typed.len() + c.len_utf8() < MAX_TEXT.saturating_sub(self.mask.len()) {
                self.typed.push(c);
            }
        }
        self.request()
    }

    /// Deletes the last character; returns the request to send.
    pub fn backspace(&mut self) -> Option<(u32, Request)> {
        self.typed.pop();
        self.request()
    }

    /// Picks suggestion `index`: it replaces the partial word, followed by a space. Returns the
    /// request for the next word.
    pub fn pick(&mut self, index: usize) -> Option<(u32, Request)> {
        let word = self.suggestions.get(index)?.clone();
        let keep = self.typed.len() - self.partial().len();
        self.typed.truncate(keep);
        self.typed.push_str(&word);
        self.typed.push(' ');
        self.request()
    }

    /// Takes a reply; replies to other than the current request are ignored.
    pub fn on_reply(&mut self, id: u32, response: Response) {
        if Some(id) != self.current {
            return;
        }
        self.current = None;
        match response {
            Response::Suggestions(list) => {
                let partial = self.partial().to_lowercase();
                let mut words: Vec<String> = list
                    .iter()
                    .map(|s| display_word(&s.word))
                    .filter(|w| !w.is_empty())
                    .collect();
                words.dedup();
                // Stable: keeps the model's order within each group.
                words.sort_by_key(|w| !w.to_lowercase().starts_with(&partial));
                self.suggestions = words;
                self.status.clear();
            }
            Response::Error(code) => {
                self.suggestions.clear();
                self.status = code.to_string();
            }
            _ => {}
        }
    }

    /// The display: the end of the typed text with a cursor on the first row, numbered
    /// suggestions flowing over the others (`N:word`, key N picks).
    pub fn lines<const COLS: usize, const ROWS: usize>(&self) -> Vec<String> {
        let mut lines = Vec::with_capacity(ROWS);
        let text = format!("{}_", self.typed);
        let chars: Vec<char> = text.chars().collect();
        let start = chars.len().saturating_sub(COLS);
        lines.push(chars[start..].iter().collect::<String>());
        let mut row = String::new();
        if !self.status.is_empty() {
            row = self.status.chars().take(COLS).collect();
        } else {
            for (i, word) in self.suggestions.iter().enumerate() {
                let entry = format!("{}:{}", i + 1, word);
                let needed = if row.is_empty() { 0 } else { 1 } + entry.chars().count();
                if row.chars().count() + needed > COLS {
                    if lines.len() + 1 >= ROWS || entry.chars().count() > COLS {
                        break;
                    }
                    lines.push(std::mem::take(&mut row));
                }
                if !row.is_empty() {
                    row.push(' ');
                }
                row.push_str(&entry);
            }
        }
        if ROWS > 1 {
            lines.push(row);
        }
        lines.resize(ROWS, String::new());
        lines
    }

    /// The word being typed (after the last space).
    fn partial(&self) -> &str {
        self.typed
            .rsplit(char::is_whitespace)
            .next()
            .unwrap_or_default()
    }

    fn request(&mut self) -> Option<(u32, Request)> {
        let keep = self.typed.len() - self.partial().len();
        let text = format!("{}{}", &self.typed[..keep], self.mask);
        let text = Text::try_from(text.as_str()).ok()?;
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        self.current = Some(id);
        Some((id, Request::FillMask { text, k: self.k }))
    }
}

/// A vocabulary token as a word to show: continuation pieces (`##ing`) and special tokens
/// (`[UNK]`, `<s>`) are not words and come out empty; SentencePiece / byte-level word markers
/// (`▁`, `Ġ`) are removed.
pub fn display_word(token: &str) -> String {
    if token.starts_with("##") || (token.starts_with('[') && token.ends_with(']')) {
        return String::new();
    }
    if token.starts_with('<') && token.ends_with('>') {
        return String::new();
    }
    token.trim_start_matches(['▁', 'Ġ']).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bertling_protocol::{ErrorCode, Suggestion};

    fn reply(words: &[&str]) -> Response {
        let mut list = heapless::Vec::new();
        for w in words {
            list.push(Suggestion {
                word: (*w).try_into().unwrap(),
                probability: 0.1,
            })
            .unwrap();
        }
        Response::Suggestions(list)
    }

    #[test]
    fn stale_replies_are_ignored() {
        let mut kiosk = Kiosk::new("[MASK]", 4);
        let (first, _) = kiosk.type_str("a").unwrap();
        let (second, _) = kiosk.type_str("b").unwrap();
        kiosk.on_reply(first, reply(&["old"]));
        assert!(kiosk.suggestions().is_empty());
        kiosk.on_reply(second, reply(&["new", "##s", "[UNK]", "Ġthe"]));
        assert_eq!(kiosk.suggestions(), ["new", "the"]);
    }

    #[test]
    fn errors_show_on_the_second_row() {
        let mut kiosk = Kiosk::new("[MASK]", 4);
        let (id, _) = kiosk.type_str("x").unwrap();
        kiosk.on_reply(id, Response::Error(ErrorCode::Busy));
        assert_eq!(kiosk.lines::<16, 2>(), ["x_", "busy: queue full"]);
    }

    #[test]
    fn suggestions_flow_over_rows_and_long_text_scrolls() {
        let mut kiosk = Kiosk::new("[MASK]", 8);
        let (id, _) = kiosk.type_str("the quick brown fox jumps ").unwrap();
        kiosk.on_reply(id, reply(&["over", "high", "away", "into", "onto"]));
        assert_eq!(
            kiosk.lines::<16, 3>(),
            ["rown fox jumps _", "1:over 2:high", "3:away 4:into"]
        );
        assert_eq!(kiosk.backspace().map(|(id, _)| id), Some(id + 1));
    }
}
