//! The `bertling` binary end to end: compile, fill (text and JSON), inspect, and its errors.

use std::process::{Command, Output};

use bertling_tests::{bertling_bin, compiled, fixture_dir, scratch_dir};

fn bertling(args: &[&str]) -> Output {
    Command::new(bertling_bin())
        .args(args)
        .output()
        .expect("run bertling")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn assert_clean_failure(o: &Output, needle: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(1), "stderr: {err}");
    assert!(
        err.contains("error:") && err.contains(needle),
        "wanted {needle:?} in: {err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn compile_fill_inspect() {
    let out = scratch_dir("cli").join("roberta.bertling");
    let o = bertling(&[
        "compile",
        fixture_dir("roberta").to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("roberta"));

    let model = out.to_str().unwrap();
    let o = bertling(&[
        "fill",
        model,
        "If you don't [MASK] at the sign, you will get a ticket.",
        "--json",
        "-k",
        "7",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let preds = v["masks"][0]["predictions"].as_array().unwrap();
    assert_eq!(preds.len(), 7);
    let scores: Vec<f64> = preds.iter().map(|p| p["score"].as_f64().unwrap()).collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");

    // The human-readable form prints a percentage per candidate and the filled sentence.
    let o = bertling(&["fill", model, "Hello <mask> and [MASK]."]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(
        text.contains("mask 1 of 2") && text.contains("mask 2 of 2") && text.contains('%'),
        "{text}"
    );

    let o = bertling(&["inspect", model, "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["architecture"], "roberta");
    assert_eq!(v["precision"], "int8", "int8 is the default: {v}");
    assert_eq!(v["mask_token"]["text"], "<mask>");
    // Tokenizer, encoder, head (the vocabulary projection cut to the masks), tensors, config.
    let kinds: Vec<&str> = v["sections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["Tokenizer", "Graph", "Head", "Tensors", "Config"]);
    // The planned memory at 16, 128 and the most tokens; tests/tests/footprint.rs checks the
    // figures against what requests allocate.
    let max = v["max_tokens"].as_u64().unwrap();
    let plans = v["planned_memory"].as_array().unwrap();
    let tokens: Vec<u64> = plans
        .iter()
        .map(|p| p["tokens"].as_u64().unwrap())
        .collect();
    assert_eq!(tokens, [16, 128, max]);
    let mut previous = 0;
    for p in plans {
        let part = |k: &str| p[k].as_u64().unwrap();
        let sum = part("weights") + part("activations") + part("scratch") + part("buffers");
        assert_eq!(part("peak"), sum, "{p}");
        assert!(part("weights") > 0 && part("activations") > 0 && part("peak") > previous);
        previous = part("peak");
    }
    let text = stdout(&bertling(&["inspect", model]));
    assert!(text.contains("planned memory"), "{text}");
}

#[test]
fn user_errors_are_reported_not_panicked() {
    let model = compiled("albert");
    let model = model.to_str().unwrap();
    assert_clean_failure(
        &bertling(&["fill", model, "no mask in this text"]),
        "no mask",
    );
    assert_clean_failure(&bertling(&["fill", model, ""]), "no mask");
    let long = format!("{}[MASK]", "word ".repeat(2000));
    assert_clean_failure(&bertling(&["fill", model, &long]), "tokens long");
    let missing = bertling(&["fill", "/nonexistent.bertling", "a [MASK]"]);
    assert_clean_failure(&missing, "cannot read model file /nonexistent.bertling: ");
    // The OS's reason once: the error chain prints it, the message does not repeat it.
    let err = stderr(&missing);
    assert_eq!(err.matches("(os error 2)").count(), 1, "{err}");
    let onnx = fixture_dir("albert").join("model.onnx");
    assert_clean_failure(
        &bertling(&["fill", onnx.to_str().unwrap(), "a [MASK]"]),
        "not a bertling model file",
    );
    assert_clean_failure(
        &bertling(&["inspect", onnx.to_str().unwrap()]),
        "not a bertling model file",
    );
    let zero = bertling(&["fill", model, "a [MASK]", "--threads", "0"]);
    assert_eq!(zero.status.code(), Some(2), "{}", stderr(&zero));
    assert!(
        stderr(&zero).contains("0 is not in 1..=1024"),
        "{}",
        stderr(&zero)
    );
    let out = scratch_dir("cli-err").join("x.bertling");
    assert_clean_failure(
        &bertling(&["compile", "/nonexistent", "-o", out.to_str().unwrap()]),
        "not a directory",
    );
}

/// `bertling fill ... | head -1`: a reader that goes away ends the command quietly, not with a
/// panic ("failed printing to stdout") or an error.
#[test]
fn a_closed_stdout_ends_quietly() {
    let model = compiled("distilbert");
    let model = model.to_str().unwrap();
    for args in [
        vec!["fill", model, "[MASK] is [MASK].", "--top-k", "5"],
        vec!["fill", model, "[MASK] is [MASK].", "--json"],
        vec!["tokenize", model, "a [MASK]"],
        vec!["inspect", model],
    ] {
        let mut child = Command::new(bertling_bin())
            .args(&args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run bertling");
        // Close the reading end before the model has loaded: the first write finds no reader.
        drop(child.stdout.take());
        let o = child.wait_with_output().expect("wait for bertling");
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {err}");
        assert!(err.is_empty(), "{args:?}: {err}");
    }
    // Other write failures are still errors, said as such.
    if let Ok(full) = std::fs::File::create("/dev/full") {
        let o = Command::new(bertling_bin())
            .args(["fill", model, "a [MASK]"])
            .stdout(full)
            .output()
            .expect("run bertling");
        assert_clean_failure(&o, "cannot write to standard output: ");
    }
}
