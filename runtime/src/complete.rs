//! Text completion: whole-word suggestions for the word being typed, or for the next word.
//!
//! [`Model::complete`] splits the text into a *context* and the typed *prefix* (the trailing run of
//! word characters, possibly empty), puts masks where the word goes, and scores every candidate
//! word of at most [`CompleteOptions::max_pieces`] vocabulary pieces that spells a word starting
//! with the prefix. The scoring, exactly (also in `docs/completion.md`):
//!
//! - A candidate is a sequence of `n` pieces (`1 <= n <= max_pieces`): a *first* piece, then
//!   `n - 1` *continuation* pieces (WordPiece `##x`, SentencePiece pieces without `▁`, byte-level
//!   BPE pieces without `Ġ`). Its word is the concatenation of the pieces' spellings. Every piece's
//!   spelling must be non-empty and all letters or numbers ([`is_letter_or_number`]); the word must start
//!   with the normalized prefix and be at most [`MAX_WORD`] bytes.
//! - Its score is `sum_i log p_i`: the input is the context's tokens followed by `n` masks (then
//!   the template's closing tokens); `p_1` is the softmax (over the whole vocabulary) at the first
//!   mask; for `i > 1` the first `i - 1` masks hold the chosen pieces and `p_i` is the softmax at
//!   mask `i`. Filling left to right, the position scored is always the first mask left.
//! - A word's score is the best score over the piece sequences that spell it; suggestions are the
//!   `k` best words, best first, ties by word (byte order).
//!
//! The search is exact best-first branch and bound: one forward pass per word length `n` gives
//! every first piece's log-probability (so words of one piece cost one pass); an unfinished
//! sequence is expanded (one forward pass) only while its bound beats the current `k`-th best
//! word: its score (log-probabilities are <= 0, so more pieces only lower it), plus the bias when
//! a preferred word starts with it. It stops at [`CompleteOptions::max_passes`] forward passes;
//! [`Completion::exact`] says whether the answer is provably the exact top `k` (the search ran
//! out of candidates that could beat it, and none were dropped from a full [`FRONTIER`]).
//!
//! Checked against an exhaustive PyTorch brute force (`models/bertling_models/completion.py`) on
//! all four tokenizer families; see `docs/completion.md`. A runnable version is
//! `cargo run -p bertling --example complete -- MODEL "Please insert your ca"`.

use heapless::{String as HString, Vec as HVec};
use tokenizers::models::ModelWrapper;
use tokenizers::pre_tokenizers::metaspace::PrependScheme;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{NormalizedString, Normalizer, Tokenizer};

use crate::error::{Error, Result};
use crate::model::Model;

/// The most suggestions one request returns (`k`).
pub const MAX_SUGGESTIONS: usize = 16;
/// The most pieces one suggested word may take (`max_pieces`).
pub const MAX_PIECES: usize = 4;
/// The longest suggested word, in bytes (longer candidates are not considered).
pub const MAX_WORD: usize = 64;
/// Unfinished piece sequences kept for expansion; the worst are dropped (and the answer is then
/// marked inexact unless the dropped ones provably cannot matter).
pub const FRONTIER: usize = 256;
/// The largest forward-pass budget of one request.
pub const MAX_PASSES: usize = 256;

/// How vocabulary pieces mark the start of a word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PieceStyle {
    /// WordPiece: continuations start with `##` (BERT, DistilBERT).
    WordPiece,
    /// SentencePiece-style Metaspace: word starts begin with `▁` (ALBERT).
    Metaspace,
    /// Byte-level BPE: pieces after a space begin with `Ġ` (RoBERTa).
    ByteLevel,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Not usable in a word (special, punctuation, partial UTF-8, ...).
    None,
    /// Starts a word (after a space, or where the tokenizer starts words).
    Start,
    /// Continues a word (or starts one glued to what precedes it, see [`Lexicon::first_kind`]).
    Cont,
}

/// The vocabulary as completion sees it: each piece's kind and spelling without its marker.
/// Built once when the model loads.
#[derive(Debug, Clone)]
pub struct Lexicon {
    style: Option<PieceStyle>,
    /// Metaspace: whether the word at the start of the text gets `▁`; ByteLevel: whether it gets `Ġ`.
    start_of_text_is_start: bool,
    kinds: Vec<Kind>,
    text: String,
    spans: Vec<(u32, u32)>,
}

/// GPT-2's byte-level alphabet, reversed: the byte each of the 256 characters stands for.
fn byte_level_table() -> Vec<(char, u8)> {
    let printable = |b: u32| {
        (0x21..=0x7e).contains(&b) || (0xa1..=0xac).contains(&b) || (0xae..=0xff).contains(&b)
    };
    let mut n = 0;
    (0u32..256)
        .map(|b| {
            let c = if printable(b) {
                b
            } else {
                n += 1;
                255 + n
            };
            (char::from_u32(c).unwrap_or('\0'), b as u8)
        })
        .collect()
}

/// A Unicode letter or number (general category L* or N*; Python's `str.isalnum` for the
/// characters of our vocabularies). Not `char::is_alphanumeric`, which also takes the vowel signs
/// of Indic scripts (`Other_Alphabetic` marks) that the tokenizers keep as separate pieces.
pub fn is_letter_or_number(c: char) -> bool {
    use unicode_categories::UnicodeCategories;
    c.is_letter() || c.is_number()
}

fn all_alphanumeric(s: &str) -> bool {
    !s.is_empty() && s.chars().all(is_letter_or_number)
}

impl Lexicon {
    /// Classifies every piece of `tokenizer`'s vocabulary.
    pub fn new(tokenizer: &Tokenizer) -> Lexicon {
        let mut start_of_text_is_start = true;
        let style = match tokenizer.get_model() {
            ModelWrapper::WordPiece(_) => Some(PieceStyle::WordPiece),
            _ => match tokenizer.get_pre_tokenizer() {
                Some(PreTokenizerWrapper::Metaspace(m)) => {
                    start_of_text_is_start = m.prepend_scheme != PrependScheme::Never;
                    Some(PieceStyle::Metaspace)
                }
                Some(PreTokenizerWrapper::ByteLevel(b)) => {
                    start_of_text_is_start = b.add_prefix_space;
                    Some(PieceStyle::ByteLevel)
                }
                _ => None,
            },
        };
        let (continuing, replacement) = match (tokenizer.get_model(), tokenizer.get_pre_tokenizer())
        {
            (ModelWrapper::WordPiece(wp), _) => (wp.continuing_subword_prefix.clone(), '▁'),
            (_, Some(PreTokenizerWrapper::Metaspace(m))) => (String::new(), m.get_replacement()),
            _ => (String::new(), '▁'),
        };
        let table = byte_level_table();
        let added = tokenizer.get_added_tokens_decoder();
        let size = tokenizer.get_vocab_size(true);
        let mut lex = Lexicon {
            style,
            start_of_text_is_start,
            kinds: Vec::with_capacity(size),
            text: String::new(),
            spans: Vec::with_capacity(size),
        };
        let mut bytes = Vec::new();
        for id in 0..size as u32 {
            let piece = tokenizer.id_to_token(id).unwrap_or_default();
            let (kind, spelling): (Kind, std::borrow::Cow<str>) = match style {
                _ if added.contains_key(&id) => (Kind::None, "".into()),
                None => (Kind::None, "".into()),
                Some(PieceStyle::WordPiece) => match piece.strip_prefix(continuing.as_str()) {
                    Some(rest) if !continuing.is_empty() => (Kind::Cont, rest.to_string().into()),
                    _ => (Kind::Start, piece.clone().into()),
                },
                Some(PieceStyle::Metaspace) => match piece.strip_prefix(replacement) {
                    Some(rest) => (Kind::Start, rest.to_string().into()),
                    None => (Kind::Cont, piece.clone().into()),
                },
                Some(PieceStyle::ByteLevel) => {
                    bytes.clear();
                    let mut ok = true;
                    for c in piece.chars() {
                        match table.iter().find(|(t, _)| *t == c) {
                            Some(&(_, b)) => bytes.push(b),
                            None => ok = false,
                        }
                    }
                    match std::str::from_utf8(&bytes) {
                        Ok(s) if ok => match s.strip_prefix(' ') {
                            Some(rest) => (Kind::Start, rest.to_string().into()),
                            None => (Kind::Cont, s.to_string().into()),
                        },
                        _ => (Kind::None, "".into()),
                    }
                }
            };
            let kind = if all_alphanumeric(&spelling) {
                kind
            } else {
                Kind::None
            };
            let from = lex.text.len() as u32;
            if kind != Kind::None {
                lex.text.push_str(&spelling);
            }
            lex.kinds.push(kind);
            lex.spans.push((from, lex.text.len() as u32));
        }
        lex
    }

    /// How the vocabulary marks word starts, if completion understands this tokenizer.
    pub fn style(&self) -> Option<PieceStyle> {
        self.style
    }

    /// Number of pieces that can start a word after a space, and that continue a word.
    pub fn counts(&self) -> (usize, usize) {
        let count = |k| self.kinds.iter().filter(|&&x| x == k).count();
        (count(Kind::Start), count(Kind::Cont))
    }

    fn spelling(&self, id: usize) -> &str {
        let (a, b) = self.spans[id];
        &self.text[a as usize..b as usize]
    }

    /// The kind of a word's first piece, given what precedes the word.
    fn first_kind(&self, before: Boundary) -> Kind {
        match (self.style, before) {
            (Some(PieceStyle::WordPiece), _) => Kind::Start,
            (_, Boundary::Space) => Kind::Start,
            (_, Boundary::TextStart) if self.start_of_text_is_start => Kind::Start,
            _ => Kind::Cont,
        }
    }
}

/// What precedes the typed prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Boundary {
    /// Nothing: the word is the text's first.
    TextStart,
    /// Whitespace.
    Space,
    /// Something else (punctuation, a symbol): the word is glued to it.
    Glued,
}

/// Whether `c` belongs to a typed word: a letter or number ([`is_letter_or_number`]), or a
/// combining diacritical mark (U+0300..U+036F, so decomposed accents stay inside the word).
pub fn is_word_char(c: char) -> bool {
    is_letter_or_number(c) || ('\u{300}'..='\u{36f}').contains(&c)
}

/// Splits typed text into the context and the prefix being typed: returns the byte offset where
/// the prefix (the trailing run of [`is_word_char`] characters, possibly empty) starts, and what
/// precedes it.
///
/// ```
/// use bertling::complete::{split_prefix, Boundary};
/// assert_eq!(split_prefix("Please insert your ca"), (19, Boundary::Space));
/// assert_eq!(split_prefix("Please insert "), (14, Boundary::Space));
/// assert_eq!(split_prefix("Hello,wor"), (6, Boundary::Glued));
/// assert_eq!(split_prefix("Caf\u{e9}"), (0, Boundary::TextStart));
/// ```
pub fn split_prefix(text: &str) -> (usize, Boundary) {
    let start = text
        .char_indices()
        .rev()
        .take_while(|&(_, c)| is_word_char(c))
        .last()
        .map_or(text.len(), |(i, _)| i);
    let before = match text[..start].chars().next_back() {
        None => Boundary::TextStart,
        Some(c) if c.is_whitespace() => Boundary::Space,
        Some(_) => Boundary::Glued,
    };
    (start, before)
}

/// A set of words, spelled as the model's vocabulary spells them (normalized by its tokenizer:
/// lowercased and accent-stripped for uncased models). Made once with [`Model::word_list`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WordList {
    words: Vec<String>,
}

impl WordList {
    /// Whether `word` (vocabulary spelling) is in the list.
    pub fn contains(&self, word: &str) -> bool {
        self.words
            .binary_search_by(|w| w.as_str().cmp(word))
            .is_ok()
    }

    /// Whether some word in the list starts with `prefix`.
    pub fn has_prefix(&self, prefix: &str) -> bool {
        let i = self.words.partition_point(|w| w.as_str() < prefix);
        self.words.get(i).is_some_and(|w| w.starts_with(prefix))
    }

    /// The words, sorted.
    pub fn words(&self) -> &[String] {
        &self.words
    }
}

/// How a word list shapes suggestions.
#[derive(Debug, Clone, Copy, Default)]
pub enum WordFilter<'a> {
    /// Any word.
    #[default]
    Any,
    /// Only words in the list (a kiosk menu).
    Only(&'a WordList),
    /// Any word, with `bias` (natural-log units, added to the score) for words in the list.
    Prefer(&'a WordList, f32),
}

/// Options of [`Model::complete`].
#[derive(Debug, Clone, Copy)]
pub struct CompleteOptions<'a> {
    /// How many suggestions (1..=[`MAX_SUGGESTIONS`]).
    pub k: usize,
    /// The most pieces a word may take (1..=[`MAX_PIECES`]).
    pub max_pieces: usize,
    /// The most forward passes (`max_pieces..=`[`MAX_PASSES`]); at least one per word length.
    pub max_passes: usize,
    /// Restrict or bias suggestions to a word list.
    pub words: WordFilter<'a>,
    /// Words never suggested.
    pub stop: Option<&'a WordList>,
}

impl Default for CompleteOptions<'_> {
    /// 5 suggestions, words of up to 2 pieces, at most 8 forward passes per request.
    fn default() -> Self {
        CompleteOptions {
            k: 5,
            max_pieces: 2,
            max_passes: 8,
            words: WordFilter::Any,
            stop: None,
        }
    }
}

/// One suggested word.
#[derive(Debug, Clone, PartialEq)]
pub struct Suggestion {
    /// The whole word, as the vocabulary spells it (markers removed; lowercase for uncased models).
    pub word: HString<MAX_WORD>,
    /// Its pieces (token ids), in order.
    pub pieces: HVec<u32, MAX_PIECES>,
    /// `sum log p` of its pieces (see the module docs), plus the word-list bias if any.
    pub score: f32,
}

impl Suggestion {
    /// `exp(score)`: the probability of the word's pieces filling that many masks (with a bias,
    /// not a probability).
    pub fn probability(&self) -> f32 {
        self.score.exp()
    }
}

/// The answer to one completion request. Fixed capacity: no heap.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Completion {
    /// Suggestions, best first.
    pub suggestions: HVec<Suggestion, MAX_SUGGESTIONS>,
    /// Byte offset in the text where the typed prefix starts (the text's length when the next
    /// word is asked for): a suggestion replaces `text[prefix_start..]`.
    pub prefix_start: usize,
    /// The prefix as the vocabulary spells it (normalized); empty for the next word. Longer than
    /// [`MAX_WORD`] bytes means no suggestion, and it is left empty here.
    pub prefix: HString<MAX_WORD>,
    /// Forward passes this request ran.
    pub passes: u32,
    /// Whether the suggestions are provably the exact top `k` of the candidate set.
    pub exact: bool,
}

#[derive(Debug, Clone, Copy)]
struct Hyp {
    n: u8,
    len: u8,
    pieces: [u32; MAX_PIECES],
    score: f64,
    /// Upper bound of the score of any word this can become: `score`, plus the bias when some
    /// preferred word starts with it.
    bound: f64,
}

struct Search<'a> {
    k: usize,
    prefix: &'a str,
    first: Kind,
    filter: WordFilter<'a>,
    stop: Option<&'a WordList>,
    bias_max: f64,
    frontier: HVec<Hyp, FRONTIER>,
    dropped_max: f64,
}

impl Search<'_> {
    fn threshold(&self, out: &Completion) -> f64 {
        if out.suggestions.len() < self.k {
            f64::NEG_INFINITY
        } else {
            out.suggestions[self.k - 1].score as f64
        }
    }

    /// Scores every piece that can fill the first mask left of `h` (whose logits are `row`).
    fn process(&mut self, lex: &Lexicon, row: &[f32], h: &Hyp, out: &mut Completion) {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let lse = max as f64
            + row
                .iter()
                .map(|&l| ((l - max) as f64).exp())
                .sum::<f64>()
                .ln();
        let mut base: HString<MAX_WORD> = HString::new();
        for &p in &h.pieces[..h.len as usize] {
            if base.push_str(lex.spelling(p as usize)).is_err() {
                return;
            }
        }
        let rem = self.prefix.get(base.len()..).unwrap_or("");
        let last = h.len + 1 == h.n;
        let want = if h.len == 0 { self.first } else { Kind::Cont };
        for (id, &logit) in row.iter().enumerate().take(lex.kinds.len()) {
            if lex.kinds[id] != want {
                continue;
            }
            let s = lex.spelling(id);
            let fits = if last {
                s.starts_with(rem)
            } else {
                s.starts_with(rem) || rem.starts_with(s)
            };
            if !fits || base.len() + s.len() > MAX_WORD {
                continue;
            }
            let score = h.score + (logit as f64 - lse);
            if score + self.bias_max < self.threshold(out) {
                continue;
            }
            let mut word = base.clone();
            let _ = word.push_str(s); // fits: checked above
            let mut next = *h;
            next.pieces[h.len as usize] = id as u32;
            next.len += 1;
            next.score = score;
            next.bound = score;
            if last {
                self.offer_word(word, &next, out);
                continue;
            }
            match self.filter {
                WordFilter::Any => {}
                WordFilter::Only(list) => {
                    if !list.has_prefix(&word) {
                        continue;
                    }
                }
                WordFilter::Prefer(list, bias) => {
                    if bias > 0.0 && list.has_prefix(&word) {
                        next.bound += bias as f64;
                    }
                }
            }
            if next.bound >= self.threshold(out) {
                self.offer_hyp(next);
            }
        }
    }

    fn offer_word(&mut self, word: HString<MAX_WORD>, h: &Hyp, out: &mut Completion) {
        if self.stop.is_some_and(|s| s.contains(&word)) {
            return;
        }
        let mut score = h.score;
        match self.filter {
            WordFilter::Any => {}
            WordFilter::Only(list) => {
                if !list.contains(&word) {
                    return;
                }
            }
            WordFilter::Prefer(list, bias) => {
                if list.contains(&word) {
                    score += bias as f64;
                }
            }
        }
        let score = score as f32;
        let list = &mut out.suggestions;
        if let Some(i) = list.iter().position(|s| s.word == word) {
            if list[i].score >= score {
                return;
            }
            list.remove(i);
        }
        let at = list
            .iter()
            .position(|s| score > s.score || (score == s.score && word < s.word))
            .unwrap_or(list.len());
        if at >= self.k {
            return;
        }
        if list.len() >= self.k {
            list.pop();
        }
        let mut pieces = HVec::new();
        for &p in &h.pieces[..h.len as usize] {
            let _ = pieces.push(p); // len <= MAX_PIECES
        }
        let _ = list.insert(
            at,
            Suggestion {
                word,
                pieces,
                score,
            },
        );
    }

    fn offer_hyp(&mut self, h: Hyp) {
        let f = &mut self.frontier;
        if f.is_full() {
            let worst = f[f.len() - 1].bound;
            if h.bound <= worst {
                self.dropped_max = self.dropped_max.max(h.bound);
                return;
            }
            f.pop();
            self.dropped_max = self.dropped_max.max(worst);
        }
        let at = f.iter().position(|o| h.bound > o.bound).unwrap_or(f.len());
        let _ = f.insert(at, h); // room made above
    }
}

impl Model {
    /// A [`WordList`] of `words`, normalized as the tokenizer normalizes text (so `"Café"` is
    /// `"cafe"` for an uncased model). Empty entries are skipped.
    pub fn word_list<I, S>(&self, words: I) -> Result<WordList>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut out = vec![];
        for w in words {
            let w = self.normalize(w.as_ref().trim())?;
            if !w.is_empty() {
                out.push(w);
            }
        }
        out.sort();
        out.dedup();
        Ok(WordList { words: out })
    }

    /// `text` through the tokenizer's normalizer (unchanged when it has none).
    pub fn normalize(&self, text: &str) -> Result<String> {
        match self.tokenizer().get_normalizer() {
            None => Ok(text.to_string()),
            Some(n) => {
                let mut s = NormalizedString::from(text);
                n.normalize(&mut s)
                    .map_err(|e| Error::Tokenizer(e.to_string()))?;
                Ok(s.get().to_string())
            }
        }
    }

    /// Suggests whole words for the end of `text`: completions of the word being typed when the
    /// text ends inside a word ("Please insert your ca"), the next word when it ends with a space.
    /// The scoring and search are described in the [module docs](crate::complete).
    ///
    /// ```no_run
    /// # fn main() -> Result<(), bertling::Error> {
    /// use bertling::complete::CompleteOptions;
    /// let mut model = bertling::Model::load("bert.bertling")?;
    /// let answer = model.complete("Please insert your ca", &CompleteOptions::default())?;
    /// for s in &answer.suggestions {
    ///     println!("{:>8.4}  {}", s.probability(), s.word);
    /// }
    /// # Ok(()) }
    /// ```
    pub fn complete(&mut self, text: &str, options: &CompleteOptions) -> Result<Completion> {
        let mut out = Completion::default();
        self.complete_into(text, options, &mut out)?;
        Ok(out)
    }

    /// Like [`Model::complete`], into a caller-owned result.
    pub fn complete_into(
        &mut self,
        text: &str,
        options: &CompleteOptions,
        out: &mut Completion,
    ) -> Result<()> {
        *out = Completion::default();
        let o = options;
        if o.k == 0 || o.k > MAX_SUGGESTIONS {
            return Err(Error::BadTopK {
                k: o.k,
                max: MAX_SUGGESTIONS,
            });
        }
        if o.max_pieces == 0 || o.max_pieces > MAX_PIECES {
            return Err(Error::BadOptions(format!(
                "max pieces must be between 1 and {MAX_PIECES}, got {}",
                o.max_pieces
            )));
        }
        if o.max_passes < o.max_pieces || o.max_passes > MAX_PASSES {
            return Err(Error::BadOptions(format!(
                "max passes must be between max pieces ({}) and {MAX_PASSES}, got {}",
                o.max_pieces, o.max_passes
            )));
        }
        if let WordFilter::Prefer(_, bias) = o.words {
            if !bias.is_finite() {
                return Err(Error::BadOptions(format!(
                    "the bias must be finite, got {bias}"
                )));
            }
        }
        let Some(style) = self.lexicon().style() else {
            return Err(Error::BadOptions(
                "completion does not know this tokenizer's word marking (WordPiece, Metaspace or \
                 byte-level BPE)"
                    .to_string(),
            ));
        };
        let _ = style;
        let (start, before) = split_prefix(text);
        out.prefix_start = start;
        let prefix = self.normalize(&text[start..])?;
        if out.prefix.push_str(&prefix).is_err() {
            // No word of at most MAX_WORD bytes starts with it.
            out.exact = true;
            return Ok(());
        }

        // The context's tokens with one mask where the word goes.
        let mut with_mask = String::with_capacity(start + 16);
        with_mask.push_str(&text[..start]);
        with_mask.push_str(self.mask_token());
        let base_ids = self.encode(&with_mask)?.to_vec();
        let base_types = self.last_type_ids().to_vec();
        let mask_id = self.manifest().special_tokens.mask.id;
        let Some(at) = base_ids.iter().rposition(|&t| t == mask_id) else {
            return Err(Error::Inconsistent(
                "the tokenizer dropped the mask token".to_string(),
            ));
        };
        let masks_before = base_ids[..at].iter().filter(|&&t| t == mask_id).count();
        let max_tokens = self.manifest().max_tokens as usize;
        if base_ids.len() > max_tokens {
            return Err(Error::TooLong {
                tokens: base_ids.len(),
                max: max_tokens,
            });
        }

        let first = self.lexicon().first_kind(before);
        let bias_max = match o.words {
            WordFilter::Prefer(_, b) => (b as f64).max(0.0),
            _ => 0.0,
        };
        let mut search = Search {
            k: o.k,
            prefix: &prefix,
            first,
            filter: o.words,
            stop: o.stop,
            bias_max,
            frontier: HVec::new(),
            dropped_max: f64::NEG_INFINITY,
        };
        let mut ids = Vec::with_capacity(base_ids.len() + MAX_PIECES);
        let mut types = Vec::with_capacity(base_ids.len() + MAX_PIECES);
        let mut run =
            |model: &mut Model, search: &mut Search, h: &Hyp, out: &mut Completion| -> Result<()> {
                let n = h.n as usize;
                ids.clear();
                types.clear();
                ids.extend_from_slice(&base_ids[..at]);
                ids.extend_from_slice(&h.pieces[..h.len as usize]);
                ids.extend(std::iter::repeat_n(mask_id, n - h.len as usize));
                ids.extend_from_slice(&base_ids[at + 1..]);
                types.extend_from_slice(&base_types[..at]);
                types.extend(std::iter::repeat_n(base_types[at], n));
                types.extend_from_slice(&base_types[at + 1..]);
                model.forward_ids(&ids, &types)?;
                out.passes += 1;
                let row = model.last_logits(masks_before).ok_or_else(|| {
                    Error::Inference("no logits at the word's first mask".to_string())
                })?;
                search.process(model.lexicon(), row, h, out);
                Ok(())
            };

        for n in 1..=o.max_pieces {
            if base_ids.len() + n - 1 > max_tokens {
                break; // longer words do not fit; shorter ones were scored
            }
            let h = Hyp {
                n: n as u8,
                len: 0,
                pieces: [0; MAX_PIECES],
                score: 0.0,
                bound: bias_max,
            };
            run(self, &mut search, &h, out)?;
        }
        let mut exact = true;
        while let Some(&h) = search.frontier.first() {
            if h.bound <= search.threshold(out) {
                break;
            }
            if out.passes as usize >= o.max_passes {
                exact = false;
                break;
            }
            search.frontier.remove(0);
            run(self, &mut search, &h, out)?;
        }
        if search.dropped_max > search.threshold(out) {
            exact = false;
        }
        out.exact = exact;
        Ok(())
    }
}
