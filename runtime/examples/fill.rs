//! Fills the masks of a sentence: `cargo run -p bertling --example fill -- MODEL "TEXT [MASK]."`

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(path), Some(text)) = (args.next(), args.next()) else {
        eprintln!("usage: fill MODEL.bertling \"TEXT with [MASK]\"");
        std::process::exit(2);
    };
    let mut model = bertling::Model::load(path)?;
    let answer = model.fill_mask(&text, 5)?;
    for (i, mask) in answer.masks.iter().enumerate() {
        println!("mask {} (token {}):", i + 1, mask.position);
        for c in &mask.candidates {
            let filled = model.filled_sequence(&answer, i, c.token)?;
            println!(
                "  {:>6.2}%  {:<12} {}",
                c.score * 100.0,
                model.token_str(c.token),
                filled
            );
        }
    }
    Ok(())
}
