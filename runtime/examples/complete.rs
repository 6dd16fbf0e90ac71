//! Suggests whole words for the end of a text, as a kiosk does while someone types:
//! `cargo run -p bertling --example complete -- MODEL "Please insert your ca"`

use bertling::complete::CompleteOptions;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(path), Some(text)) = (args.next(), args.next()) else {
        eprintln!("usage: complete MODEL.bertling \"TEXT typed so fa\"");
        std::process::exit(2);
    };
    let mut model = bertling::Model::load(path)?;
    let answer = model.complete(&text, &CompleteOptions::default())?;
    let typed = &text[..answer.prefix_start];
    for s in &answer.suggestions {
        println!(
            "  {:>8.4}%  {:<16} {typed}{}",
            s.probability() * 100.0,
            s.word,
            s.word
        );
    }
    println!(
        "{} forward passes{}",
        answer.passes,
        if answer.exact { ", exact" } else { "" }
    );
    Ok(())
}
