//! `bertling complete`: whole-word suggestions for the end of a text, as a kiosk asks while
//! someone types (the word being typed, or the next word after a space).

use std::path::PathBuf;

use anyhow::{Context, Result};
use bertling::complete::{CompleteOptions, WordFilter, WordList};
use bertling::{LoadOptions, Model};
use serde::Serialize;

#[derive(clap::Args)]
pub struct CompleteArgs {
    /// The model file.
    model: PathBuf,
    /// The text typed so far: ending inside a word completes that word, ending with a space
    /// suggests the next word.
    text: String,
    /// How many suggestions (at most 16).
    #[arg(short = 'k', long, default_value_t = 5)]
    top_k: usize,
    /// The most vocabulary pieces a suggested word may take (at most 4).
    #[arg(long, default_value_t = 2)]
    max_pieces: usize,
    /// The most forward passes per request (at least --max-pieces, at most 256).
    #[arg(long, default_value_t = 8)]
    max_passes: usize,
    /// Only suggest words from this file (one word per line).
    #[arg(long, value_name = "FILE", conflicts_with = "prefer")]
    only: Option<PathBuf>,
    /// Favour words from this file (one word per line) by --bias.
    #[arg(long, value_name = "FILE")]
    prefer: Option<PathBuf>,
    /// What --prefer adds to a listed word's score (natural log: 1.0 multiplies its probability by e).
    #[arg(long, default_value_t = 2.0, requires = "prefer")]
    bias: f32,
    /// Never suggest the words of this file (one word per line).
    #[arg(long, value_name = "FILE")]
    stop: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    /// Threads per request.
    #[arg(long, default_value_t = 1, value_parser = crate::thread_count())]
    threads: usize,
}

#[derive(Serialize)]
struct SuggestionOut {
    word: String,
    /// The typed text with the suggestion in place of the typed prefix.
    text: String,
    score: f32,
    probability: f32,
    pieces: Vec<u32>,
}

#[derive(Serialize)]
struct CompletionOut {
    text: String,
    prefix: String,
    prefix_start: usize,
    passes: u32,
    exact: bool,
    suggestions: Vec<SuggestionOut>,
}

fn read_list(model: &Model, path: &Option<PathBuf>) -> Result<Option<WordList>> {
    let Some(path) = path else { return Ok(None) };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the word list {}", path.display()))?;
    Ok(Some(model.word_list(text.lines())?))
}

pub fn run(args: CompleteArgs) -> Result<()> {
    let mut model = Model::load_with(
        &args.model,
        &LoadOptions {
            threads: args.threads,
        },
    )?;
    let only = read_list(&model, &args.only)?;
    let prefer = read_list(&model, &args.prefer)?;
    let stop = read_list(&model, &args.stop)?;
    let words = match (&only, &prefer) {
        (Some(l), _) => WordFilter::Only(l),
        (None, Some(l)) => WordFilter::Prefer(l, args.bias),
        _ => WordFilter::Any,
    };
    let options = CompleteOptions {
        k: args.top_k,
        max_pieces: args.max_pieces,
        max_passes: args.max_passes,
        words,
        stop: stop.as_ref(),
    };
    let c = model.complete(&args.text, &options)?;
    let head = &args.text[..c.prefix_start];
    let out = CompletionOut {
        text: args.text.clone(),
        prefix: c.prefix.to_string(),
        prefix_start: c.prefix_start,
        passes: c.passes,
        exact: c.exact,
        suggestions: c
            .suggestions
            .iter()
            .map(|s| SuggestionOut {
                word: s.word.to_string(),
                text: format!("{head}{}", s.word),
                score: s.score,
                probability: s.probability(),
                pieces: s.pieces.to_vec(),
            })
            .collect(),
    };
    if args.json {
        outln!("{}", serde_json::to_string(&out)?);
        return Ok(());
    }
    if out.suggestions.is_empty() {
        outln!("(no suggestion)");
    }
    for s in &out.suggestions {
        outln!("{:>9.4}%  {:<20} {}", s.probability * 100.0, s.word, s.text);
    }
    eprintln!(
        "{} forward pass{}{}",
        out.passes,
        if out.passes == 1 { "" } else { "es" },
        if out.exact {
            ""
        } else {
            " (budget reached: the best found, not proven the best)"
        }
    );
    Ok(())
}
