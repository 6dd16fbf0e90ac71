//! End to end over a pty, against the real daemon binary and the real (tiny) model: a
//! firmware-side client sends 10,000 mixed requests in bursts, with cancels; every request gets
//! exactly one reply with its id, of the right kind, in an order the documented supersession and
//! cancel semantics allow. Then every kind of damaged input, each followed by a good request.

mod common;

use std::collections::HashMap;

use bertling_kiosk::engine::{Engine, ModelEngine};
use bertling_protocol::{
    crc32, ErrorCode, Request, Response, CRC_LEN, HEADER_LEN, MAX_ENCODED, NOTICE_ID,
};
use common::{fill, frame_into, PtyDaemon, Rng};

const SENTENCES: [&str; 6] = [
    "the capital of france is [MASK].",
    "i would like a cup of [MASK] please",
    "[MASK] is the best way to travel",
    "she opened the [MASK] and walked in",
    "hello [MASK]",
    "we are going to the [MASK] tomorrow",
];

#[derive(Debug, Clone, Copy, PartialEq)]
enum Sent {
    Ping,
    Info,
    /// A good fill-mask: sentence index and k.
    Fill(usize, u8),
    NoMask,
    TwoMasks,
    BadK,
    Complete,
    Cancel(u32),
}

impl Sent {
    /// Queued for the model (and so supersedes / can be superseded or cancelled).
    fn queued(self) -> bool {
        matches!(
            self,
            Sent::Fill(..) | Sent::NoMask | Sent::TwoMasks | Sent::Complete
        )
    }

    fn request(self) -> Request {
        match self {
            Sent::Ping => Request::Ping,
            Sent::Info => Request::Info,
            Sent::Fill(s, k) => fill(SENTENCES[s], k),
            Sent::NoMask => fill("no mask here", 3),
            Sent::TwoMasks => fill("[MASK] and [MASK]", 3),
            Sent::BadK => fill("hello [MASK]", 0),
            Sent::Complete => Request::Complete {
                text: "hello wor".try_into().unwrap(),
                k: 3,
            },
            Sent::Cancel(target) => Request::Cancel { target },
        }
    }
}

#[test]
fn ten_thousand_mixed_requests_each_get_exactly_one_right_reply() {
    let mut daemon = PtyDaemon::start();
    let replies = daemon.replies();
    let mut reference = ModelEngine::new(bertling::Model::load(common::model()).unwrap());
    let mut expected_words: HashMap<(usize, u8), Vec<(String, f32)>> = HashMap::new();
    let expected_completion: Vec<(String, f32)> = reference
        .complete("hello wor", 3)
        .unwrap()
        .iter()
        .map(|w| (w.word.to_string(), w.probability))
        .collect();
    assert_eq!(expected_completion.len(), 3);
    assert!(expected_completion
        .iter()
        .all(|(w, _)| w.starts_with("wor")));

    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut sent: Vec<Sent> = vec![Sent::Ping]; // index = id; id 0 is never used
    let mut got: Vec<Option<(usize, Response)>> = vec![None]; // reply and its arrival order
    let mut arrivals = 0usize;
    let (mut superseded, mut cancelled_found, mut answered) = (0, 0, 0);

    while sent.len() <= 10_000 {
        let burst_len = 1 + rng.below(20) as usize;
        let first = sent.len();
        let mut bytes = Vec::new();
        for i in 0..burst_len {
            let id = sent.len() as u32;
            let last = i + 1 == burst_len || sent.len() == 10_000;
            let what = if last {
                // Each burst ends with a good fill-mask, which nothing supersedes.
                Sent::Fill(rng.below(6) as usize, 1 + rng.below(16) as u8)
            } else {
                match rng.below(100) {
                    0..=54 => Sent::Fill(rng.below(6) as usize, 1 + rng.below(16) as u8),
                    55..=62 => Sent::Ping,
                    63..=67 => Sent::Info,
                    68..=71 => Sent::NoMask,
                    72..=74 => Sent::TwoMasks,
                    75..=78 => Sent::BadK,
                    79..=83 => Sent::Complete,
                    84..=91 => Sent::Cancel(id.saturating_sub(1 + rng.below(3) as u32).max(1)),
                    92..=96 => Sent::Cancel(1 + rng.below(u64::from(id)) as u32),
                    _ => Sent::Cancel(4_000_000_000),
                }
            };
            frame_into(&mut bytes, id, &what.request());
            sent.push(what);
            got.push(None);
            if last {
                break;
            }
        }
        daemon.send_raw(&bytes);
        // Wait for every reply of the burst (each id exactly once).
        let mut missing = sent.len() - first;
        while missing > 0 {
            let (id, response) = replies.recv().expect("the daemon stays up");
            assert_ne!(id, NOTICE_ID, "no frame was damaged: {response:?}");
            let slot = got
                .get_mut(id as usize)
                .unwrap_or_else(|| panic!("reply to an id never sent: {id}"));
            assert!(slot.is_none(), "second reply to {id}: {response:?}");
            assert!(id as usize >= first, "reply to {id} from an earlier burst");
            *slot = Some((arrivals, response));
            arrivals += 1;
            missing -= 1;
        }

        // Check the burst against the documented semantics.
        for id in first..sent.len() {
            let (at, response) = got[id].as_ref().unwrap();
            let later_queued = (id + 1..sent.len()).find(|&j| sent[j].queued());
            match (sent[id], response) {
                (Sent::Ping, Response::Pong) => {}
                (Sent::Info, Response::Info(info)) => {
                    assert_eq!(info.model, "distilbert");
                    assert!(info.fill_mask && info.complete);
                }
                (Sent::BadK, Response::Error(ErrorCode::BadK)) => {}
                (what, Response::Error(ErrorCode::Superseded)) if what.queued() => {
                    superseded += 1;
                    // Superseded by a later queued request, answered before anything for it.
                    let j = later_queued.unwrap_or_else(|| panic!("{id} superseded by nothing"));
                    assert!(got[j].as_ref().unwrap().0 > *at, "{id} answered after {j}");
                }
                (what, Response::Error(ErrorCode::Cancelled)) if what.queued() => {
                    let canceller = (id + 1..sent.len())
                        .find(|&j| sent[j] == Sent::Cancel(id as u32))
                        .unwrap_or_else(|| panic!("{id} cancelled by nothing"));
                    let (cancel_at, cancel_reply) = got[canceller].as_ref().unwrap();
                    assert_eq!(cancel_reply, &Response::Cancelled { found: true });
                    assert!(cancel_at > at);
                }
                (Sent::Cancel(target), Response::Cancelled { found }) => {
                    if *found {
                        cancelled_found += 1;
                        let (target_at, target_reply) = got[target as usize].as_ref().unwrap();
                        assert_eq!(target_reply, &Response::Error(ErrorCode::Cancelled));
                        assert!(target_at < at);
                    } else if let Some(Some((target_at, target_reply))) = got.get(target as usize) {
                        // Not pending any more: answered before the cancel was, and not by it.
                        assert!(target_at < at || (target as usize) >= id, "{id}: {target}");
                        if target_reply == &Response::Error(ErrorCode::Cancelled) {
                            let earlier =
                                (target as usize + 1..id).any(|j| sent[j] == Sent::Cancel(target));
                            assert!(earlier, "{target} cancelled by no one before {id}");
                        }
                    }
                }
                (Sent::Complete, Response::Suggestions(list)) => {
                    let words: Vec<_> = list
                        .iter()
                        .map(|w| (w.word.to_string(), w.probability))
                        .collect();
                    assert_eq!(words, expected_completion, "request {id}");
                }
                (Sent::NoMask, Response::Error(ErrorCode::NoMask)) => {}
                (Sent::TwoMasks, Response::Error(ErrorCode::TooManyMasks)) => {}
                (Sent::Fill(s, k), Response::Suggestions(list)) => {
                    answered += 1;
                    let want = expected_words.entry((s, k)).or_insert_with(|| {
                        let words = reference.fill_mask(SENTENCES[s], usize::from(k)).unwrap();
                        words
                            .iter()
                            .map(|w| (w.word.to_string(), w.probability))
                            .collect()
                    });
                    let words: Vec<_> = list
                        .iter()
                        .map(|w| (w.word.to_string(), w.probability))
                        .collect();
                    assert_eq!(&words, want, "request {id}");
                    assert_eq!(words.len(), usize::from(k));
                }
                (what, response) => panic!("request {id} {what:?} answered {response:?}"),
            }
        }
        // The burst's last request is answered with its suggestions.
        let last = sent.len() - 1;
        assert!(matches!(
            got[last].as_ref().unwrap().1,
            Response::Suggestions(_)
        ));
    }
    assert_eq!(sent.len() - 1, 10_000);
    assert_eq!(arrivals, 10_000);
    assert!(got[1..].iter().all(Option::is_some));
    eprintln!("answered {answered}, superseded {superseded}, cancelled {cancelled_found}");
    // Bursts are written at once while the model works, so supersession and cancels happen.
    assert!(superseded > 0 && cancelled_found > 0);
    // No reply is left over.
    daemon.send_raw(&{
        let mut b = Vec::new();
        frame_into(&mut b, 20_000, &Request::Ping);
        b
    });
    assert_eq!(replies.recv().unwrap(), (20_000, Response::Pong));
}

/// A decoded frame with a correct CRC, for contents the encoder would never produce.
fn raw_wire(version: u8, id: u32, body: &[u8]) -> Vec<u8> {
    let mut raw = vec![version];
    raw.extend_from_slice(&id.to_le_bytes());
    raw.extend_from_slice(body);
    let crc = crc32(&raw);
    raw.extend_from_slice(&crc.to_le_bytes());
    let mut out = vec![0u8; raw.len() * 2 + 2];
    let n = cobs_encode(&raw, &mut out);
    out.truncate(n);
    out.push(0);
    out
}

/// A by-the-book COBS encoder (the test's own, not the crate's).
fn cobs_encode(input: &[u8], out: &mut [u8]) -> usize {
    let (mut code_at, mut len, mut code) = (0, 1, 1u8);
    for &b in input {
        if b == 0 {
            out[code_at] = code;
            code_at = len;
            len += 1;
            code = 1;
        } else {
            out[len] = b;
            len += 1;
            code += 1;
            if code == 0xFF {
                out[code_at] = code;
                code_at = len;
                len += 1;
                code = 1;
            }
        }
    }
    out[code_at] = code;
    len
}

#[test]
fn damaged_input_gets_an_error_or_a_notice_and_the_next_request_is_answered() {
    let mut daemon = PtyDaemon::start();
    let replies = daemon.replies();
    let good = |id: u32| {
        let mut b = Vec::new();
        frame_into(&mut b, id, &Request::Ping);
        b
    };
    let mut good_fill = Vec::new();
    frame_into(&mut good_fill, 1, &fill("hello [MASK]", 2));

    // (what, bytes, the replies it must get before the following Ping's Pong)
    let mut wrong_crc = good_fill.clone();
    wrong_crc[8] ^= 0x10;
    let truncated = [&good_fill[..good_fill.len() / 2], &[0][..]].concat();
    let mut oversize = vec![0x41u8; MAX_ENCODED + 10];
    oversize.push(0);
    let bad_cobs = vec![0x09, 0x41, 0x00]; // claims 8 bytes, has 1
    let too_short = raw_wire(1, 5, &[])[..4]
        .iter()
        .copied()
        .chain([0])
        .collect::<Vec<_>>();
    type Case = (&'static str, Vec<u8>, Vec<(u32, Response)>);
    let cases: Vec<Case> = vec![
        (
            "wrong CRC",
            wrong_crc,
            vec![(0, Response::Error(ErrorCode::BadFrame))],
        ),
        (
            "truncated",
            truncated,
            vec![(0, Response::Error(ErrorCode::BadFrame))],
        ),
        (
            "oversize",
            oversize,
            vec![(0, Response::Error(ErrorCode::BadFrame))],
        ),
        (
            "bad COBS",
            bad_cobs,
            vec![(0, Response::Error(ErrorCode::BadFrame))],
        ),
        (
            "too short",
            too_short,
            vec![(0, Response::Error(ErrorCode::BadFrame))],
        ),
        (
            "unknown version",
            raw_wire(7, 11, &[0]),
            vec![(11, Response::Error(ErrorCode::UnsupportedVersion))],
        ),
        (
            "invalid UTF-8",
            raw_wire(1, 12, &[2, 3, b'a', 0xFF, b'b', 2]),
            vec![(12, Response::Error(ErrorCode::InvalidUtf8))],
        ),
        (
            "unknown request",
            raw_wire(1, 13, &[42]),
            vec![(13, Response::Error(ErrorCode::Malformed))],
        ),
        (
            "trailing bytes",
            raw_wire(1, 14, &[0, 0]),
            vec![(14, Response::Error(ErrorCode::Malformed))],
        ),
        (
            "text over 256 bytes",
            raw_wire(
                1,
                15,
                &[&[2u8, 0x81, 0x02][..], &[b'a'; 257], &[1]].concat(),
            ),
            vec![(15, Response::Error(ErrorCode::Malformed))],
        ),
        ("lone delimiters", vec![0, 0, 0], vec![]),
    ];
    for (n, (what, bytes, want)) in cases.into_iter().enumerate() {
        let ping_id = 1000 + n as u32;
        daemon.send_raw(&bytes);
        daemon.send_raw(&good(ping_id));
        let mut seen = Vec::new();
        loop {
            let reply = replies.recv().expect("the daemon stays up");
            if reply == (ping_id, Response::Pong) {
                break;
            }
            seen.push(reply);
        }
        assert_eq!(seen, want, "{what}");
        assert_eq!(HEADER_LEN + CRC_LEN, 9);
    }

    // Random bytes: only notices (or, should noise ever form a valid frame, an answer to it),
    // and the daemon still answers afterwards.
    let mut rng = Rng(42);
    let noise: Vec<u8> = (0..50_000)
        .map(|_| {
            let r = rng.next();
            if r.is_multiple_of(40) {
                0
            } else {
                (r >> 16) as u8
            }
        })
        .collect();
    daemon.send_raw(&noise);
    daemon.send_raw(&[0]);
    daemon.send_raw(&good_fill);
    let mut notices = 0;
    loop {
        let (id, response) = replies.recv().expect("the daemon stays up");
        if id == NOTICE_ID {
            assert_eq!(response, Response::Error(ErrorCode::BadFrame));
            notices += 1;
            continue;
        }
        assert_eq!(id, 1, "{response:?}");
        assert!(matches!(response, Response::Suggestions(ref l) if l.len() == 2));
        break;
    }
    assert!(notices > 100, "{notices}");
    assert!(
        daemon.child.try_wait().unwrap().is_none(),
        "the daemon is up"
    );
}
