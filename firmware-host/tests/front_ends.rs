//! The other front ends of the real daemon: a Unix socket (each connection its own client) and
//! the terminal mode.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};

use bertling_protocol::{decode, Deframer, ErrorCode, Fed, Request, Response};
use common::{daemon_bin, fill, frame_into, model, scratch};

fn read_reply(stream: &mut UnixStream, deframer: &mut Deframer) -> (u32, Response) {
    let mut byte = [0u8; 1];
    loop {
        stream.read_exact(&mut byte).expect("the daemon answers");
        if let Fed::Frame(frame) = deframer.feed(byte[0]) {
            return decode(frame).expect("a good frame");
        }
    }
}

#[test]
fn unix_socket_connections_are_separate_clients() {
    let socket = scratch().join("kiosk.sock");
    let mut child = Command::new(daemon_bin())
        .arg("--model")
        .arg(model())
        .arg("--socket")
        .arg(&socket)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The daemon logs "listening" once the socket is bound.
    let mut stderr = child.stderr.take().unwrap();
    let mut log = Vec::new();
    let mut byte = [0u8; 1];
    while !String::from_utf8_lossy(&log).contains("listening") {
        assert_eq!(stderr.read(&mut byte).unwrap(), 1, "daemon died: {log:?}");
        log.push(byte[0]);
    }
    let mut a = UnixStream::connect(&socket).unwrap();
    let mut b = UnixStream::connect(&socket).unwrap();
    let (mut da, mut db) = (Deframer::new(), Deframer::new());
    let mut bytes = Vec::new();
    frame_into(&mut bytes, 1, &fill("hello [MASK]", 3));
    frame_into(&mut bytes, 2, &Request::Cancel { target: 1 });
    a.write_all(&bytes).unwrap();
    let mut bytes = Vec::new();
    frame_into(&mut bytes, 1, &fill("hello [MASK]", 3));
    b.write_all(&bytes).unwrap();
    // b's request 1 is not affected by a's cancel of a's request 1.
    let (id, response) = read_reply(&mut b, &mut db);
    assert_eq!(id, 1);
    assert!(
        matches!(response, Response::Suggestions(ref l) if l.len() == 3),
        "{response:?}"
    );
    // a's request 1 is either cancelled (still pending) or answered before the cancel arrived.
    let first = read_reply(&mut a, &mut da);
    let second = read_reply(&mut a, &mut da);
    match (&first, &second) {
        ((1, Response::Error(ErrorCode::Cancelled)), (2, Response::Cancelled { found: true })) => {}
        ((1, Response::Suggestions(_)), (2, Response::Cancelled { found: false })) => {}
        other => panic!("{other:?}"),
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn terminal_mode_answers_lines() {
    let mut child = Command::new(daemon_bin())
        .arg("--model")
        .arg(model())
        .args(["--terminal", "-k", "2"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"hello [MASK]\nno mask\n:complete hello\n")
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    let blocks: Vec<&str> = text.split("\n\n").collect();
    assert_eq!(blocks.len(), 4, "{text}");
    assert_eq!(blocks[0].lines().count(), 2, "two suggestions: {text}");
    for line in blocks[0].lines() {
        let (word, probability) = line.split_once('\t').unwrap();
        assert!(!word.is_empty());
        let p: f32 = probability.parse().unwrap();
        assert!((0.0..=1.0).contains(&p));
    }
    assert_eq!(blocks[1], "error: the text holds no mask");
    // `:complete hello` (k 2): two whole words starting with "hello".
    assert_eq!(blocks[2].lines().count(), 2, "two completions: {text}");
    for line in blocks[2].lines() {
        let (word, probability) = line.split_once('\t').unwrap();
        assert!(word.starts_with("hello"), "{word}");
        let p: f32 = probability.parse().unwrap();
        assert!((0.0..=1.0).contains(&p));
    }
}
