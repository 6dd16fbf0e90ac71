//! The wire format against docs/protocol.md: golden frames computed from the documented layout by
//! an independent implementation (Python's `zlib.crc32` and a by-the-book COBS encoder), and every
//! kind of damage a serial line can do.

use bertling_protocol::*;

// Generated from the layout in docs/protocol.md, not by this crate: see the comment on each.
// Request id 1, Ping: body [00].
const REQ_PING: &[u8] = &[3, 1, 1, 1, 1, 1, 5, 182, 91, 254, 71, 0];
// id 2, Info: body [01].
const REQ_INFO: &[u8] = &[3, 1, 2, 1, 1, 6, 1, 240, 17, 89, 119, 0];
// id 3, FillMask { text: "a [MASK]", k: 5 }: body [02, 08, "a [MASK]", 05].
const REQ_FILL_MASK: &[u8] = &[
    3, 1, 3, 1, 1, 16, 2, 8, 97, 32, 91, 77, 65, 83, 75, 93, 5, 196, 126, 244, 135, 0,
];
// id 4, Complete { text: "hi", k: 3 }: body [03, 02, "hi", 03].
const REQ_COMPLETE: &[u8] = &[3, 1, 4, 1, 1, 10, 3, 2, 104, 105, 3, 211, 251, 255, 215, 0];
// id 5, Cancel { target: 300 }: body [04, AC 02] (varint 300).
const REQ_CANCEL: &[u8] = &[3, 1, 5, 1, 1, 8, 4, 172, 2, 69, 202, 5, 16, 0];
// Response id 1, Pong: body [00].
const RESP_PONG: &[u8] = &[3, 1, 1, 1, 1, 1, 5, 182, 91, 254, 71, 0];
// id 2, Info { protocol 1, model "distilbert", max_text 256 (80 02), max_k 16, true, false }.
const RESP_INFO: &[u8] = &[
    3, 1, 2, 1, 1, 18, 1, 1, 10, 100, 105, 115, 116, 105, 108, 98, 101, 114, 116, 128, 2, 16, 1, 5,
    245, 21, 53, 110, 0,
];
// id 3, Suggestions [("the", 0.5), ("a", 0.25)]: body [02, 02, 03 "the" 00 00 00 3F, 01 "a" 00 00 80 3E].
const RESP_SUGGESTIONS: &[u8] = &[
    3, 1, 3, 1, 1, 7, 2, 2, 3, 116, 104, 101, 1, 1, 4, 63, 1, 97, 1, 7, 128, 62, 107, 81, 103, 156,
    0,
];
// id 5, Cancelled { found: true }: body [03, 01].
const RESP_CANCELLED: &[u8] = &[3, 1, 5, 1, 1, 7, 3, 1, 44, 38, 252, 55, 0];
// id 4, Error(Unsupported = 9): body [04, 09].
const RESP_ERROR: &[u8] = &[3, 1, 4, 1, 1, 7, 4, 9, 124, 235, 58, 189, 0];
// id 0 (notice), Error(BadFrame = 1): body [04, 01].
const RESP_NOTICE: &[u8] = &[2, 1, 1, 1, 1, 7, 4, 1, 88, 33, 112, 40, 0];

fn text(s: &str) -> Text {
    Text::try_from(s).unwrap()
}

fn word(s: &str) -> Word {
    Word::try_from(s).unwrap()
}

fn wire<T: serde::Serialize>(id: u32, message: &T) -> Vec<u8> {
    let mut out = [0u8; MAX_WIRE];
    let n = encode(id, message, &mut out).unwrap();
    out[..n].to_vec()
}

/// Runs bytes through a fresh deframer; collects what each delimiter produced.
fn deframe(bytes: &[u8]) -> Vec<Result<Vec<u8>, String>> {
    let mut deframer = Deframer::new();
    let mut out = Vec::new();
    for &b in bytes {
        match deframer.feed(b) {
            Fed::Pending => {}
            Fed::Empty => out.push(Err("empty".into())),
            Fed::Frame(f) => out.push(Ok(f.to_vec())),
            Fed::BadCobs => out.push(Err("cobs".into())),
            Fed::Oversize => out.push(Err("oversize".into())),
        }
    }
    out
}

fn decode_wire<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<(u32, T), String> {
    let frames = deframe(bytes);
    assert_eq!(frames.len(), 1, "one delimiter, one frame");
    let frame = frames.into_iter().next().unwrap()?;
    decode::<T>(&frame).map_err(|e| e.to_string())
}

fn requests() -> Vec<(&'static [u8], u32, Request)> {
    vec![
        (REQ_PING, 1, Request::Ping),
        (REQ_INFO, 2, Request::Info),
        (
            REQ_FILL_MASK,
            3,
            Request::FillMask {
                text: text("a [MASK]"),
                k: 5,
            },
        ),
        (
            REQ_COMPLETE,
            4,
            Request::Complete {
                text: text("hi"),
                k: 3,
            },
        ),
        (REQ_CANCEL, 5, Request::Cancel { target: 300 }),
    ]
}

fn responses() -> Vec<(&'static [u8], u32, Response)> {
    let mut list = heapless::Vec::new();
    list.push(Suggestion {
        word: word("the"),
        probability: 0.5,
    })
    .unwrap();
    list.push(Suggestion {
        word: word("a"),
        probability: 0.25,
    })
    .unwrap();
    vec![
        (RESP_PONG, 1, Response::Pong),
        (
            RESP_INFO,
            2,
            Response::Info(Info {
                protocol: 1,
                model: "distilbert".try_into().unwrap(),
                max_text: 256,
                max_k: 16,
                fill_mask: true,
                complete: false,
            }),
        ),
        (RESP_SUGGESTIONS, 3, Response::Suggestions(list)),
        (RESP_CANCELLED, 5, Response::Cancelled { found: true }),
        (RESP_ERROR, 4, Response::Error(ErrorCode::Unsupported)),
        (RESP_NOTICE, NOTICE_ID, Response::Error(ErrorCode::BadFrame)),
    ]
}

#[test]
fn golden_requests_encode_and_decode_as_documented() {
    for (golden, id, request) in requests() {
        assert_eq!(wire(id, &request), golden, "{request:?}");
        assert_eq!(decode_wire::<Request>(golden), Ok((id, request)));
    }
}

#[test]
fn golden_responses_encode_and_decode_as_documented() {
    for (golden, id, response) in responses() {
        assert_eq!(wire(id, &response), golden, "{response:?}");
        assert_eq!(decode_wire::<Response>(golden), Ok((id, response)));
    }
}

#[test]
fn error_codes_are_the_documented_bytes_and_unknown_codes_survive() {
    let documented = [
        (1, ErrorCode::BadFrame),
        (2, ErrorCode::UnsupportedVersion),
        (3, ErrorCode::Malformed),
        (4, ErrorCode::InvalidUtf8),
        (5, ErrorCode::BadK),
        (6, ErrorCode::NoMask),
        (7, ErrorCode::TooManyMasks),
        (8, ErrorCode::TextTooLong),
        (9, ErrorCode::Unsupported),
        (10, ErrorCode::Busy),
        (11, ErrorCode::Superseded),
        (12, ErrorCode::Cancelled),
        (13, ErrorCode::Internal),
        (14, ErrorCode::ShuttingDown),
    ];
    for (byte, code) in documented {
        assert_eq!(code.code(), byte);
        assert_eq!(ErrorCode::from_code(byte), code);
        assert_eq!(postcard_body(&Response::Error(code)), [4, byte]);
    }
    assert_eq!(ErrorCode::from_code(200), ErrorCode::Other(200));
    assert_eq!(ErrorCode::Other(200).code(), 200);
}

fn postcard_body(response: &Response) -> Vec<u8> {
    let frames = deframe(&wire(9, response));
    let frame = frames[0].clone().unwrap();
    frame[HEADER_LEN..frame.len() - CRC_LEN].to_vec()
}

#[test]
fn documented_limits_hold() {
    assert_eq!(MAX_BODY, 594);
    assert_eq!(MAX_FRAME, 603);
    assert_eq!(MAX_ENCODED, 606);
    assert_eq!(MAX_WIRE, 607);
    // The largest messages fit.
    let mut list = heapless::Vec::new();
    let long_word = "w".repeat(MAX_WORD);
    for _ in 0..MAX_K {
        list.push(Suggestion {
            word: word(&long_word),
            probability: 1.0,
        })
        .unwrap();
    }
    let biggest = Response::Suggestions(list);
    let bytes = wire(u32::MAX, &biggest);
    assert!(bytes.len() <= MAX_WIRE);
    assert_eq!(deframe(&bytes)[0].as_ref().unwrap().len(), MAX_FRAME);
    assert_eq!(decode_wire::<Response>(&bytes), Ok((u32::MAX, biggest)));
    let longest_text = Request::FillMask {
        text: text(&"é".repeat(MAX_TEXT / 2)),
        k: MAX_K as u8,
    };
    assert_eq!(
        decode_wire::<Request>(&wire(7, &longest_text)),
        Ok((7, longest_text))
    );
}

#[test]
fn a_small_buffer_is_an_error_not_a_panic() {
    let mut out = [0u8; 8];
    assert_eq!(
        encode(1, &Request::Info, &mut out),
        Err(EncodeError::BufferTooSmall)
    );
}

/// Raw frame (before COBS) with a correct CRC, for bodies the encoder would never produce.
fn raw_frame(version: u8, id: u32, body: &[u8]) -> Vec<u8> {
    let mut raw = vec![version];
    raw.extend_from_slice(&id.to_le_bytes());
    raw.extend_from_slice(body);
    let crc = crc32(&raw);
    raw.extend_from_slice(&crc.to_le_bytes());
    raw
}

#[test]
fn intact_frames_with_bad_contents_name_their_id() {
    // Unknown version.
    assert_eq!(
        decode::<Request>(&raw_frame(2, 77, &[0])),
        Err(DecodeError::UnsupportedVersion { id: 77, version: 2 })
    );
    // Unknown request tag, trailing bytes, truncated body, k missing.
    for body in [&[9u8][..], &[0, 0], &[2, 5, b'a'], &[2, 1, b'a'], &[]] {
        assert_eq!(
            decode::<Request>(&raw_frame(1, 8, body)),
            Err(DecodeError::Body {
                id: 8,
                code: ErrorCode::Malformed
            }),
            "{body:?}"
        );
    }
    // Invalid UTF-8.
    assert_eq!(
        decode::<Request>(&raw_frame(1, 9, &[2, 2, 0xC3, 0x28, 1])),
        Err(DecodeError::Body {
            id: 9,
            code: ErrorCode::InvalidUtf8
        })
    );
    // Text one byte over MAX_TEXT.
    let mut body = vec![2, 0x81, 0x02];
    body.extend(std::iter::repeat_n(b'a', MAX_TEXT + 1));
    body.push(1);
    assert_eq!(
        decode::<Request>(&raw_frame(1, 10, &body)),
        Err(DecodeError::Body {
            id: 10,
            code: ErrorCode::Malformed
        })
    );
    assert_eq!(
        DecodeError::Body {
            id: 10,
            code: ErrorCode::Malformed
        }
        .reply(),
        (10, ErrorCode::Malformed)
    );
}

#[test]
fn every_single_bit_flip_is_caught() {
    for (golden, _, _) in requests() {
        let frame = deframe(golden)[0].clone().unwrap();
        for i in 0..frame.len() {
            for bit in 0..8 {
                let mut bad = frame.clone();
                bad[i] ^= 1 << bit;
                match decode::<Request>(&bad) {
                    Err(DecodeError::BadCrc) => {}
                    other => panic!("flip byte {i} bit {bit}: {other:?}"),
                }
            }
        }
    }
}

#[test]
fn truncated_frames_are_dropped() {
    for (golden, _, _) in requests() {
        for cut in 1..golden.len() - 1 {
            let mut bytes = golden[..cut].to_vec();
            bytes.push(0);
            for frame in deframe(&bytes).into_iter().flatten() {
                let reply = decode::<Request>(&frame).unwrap_err().reply();
                assert_eq!(reply, (NOTICE_ID, ErrorCode::BadFrame), "cut at {cut}");
            }
        }
    }
}

#[test]
fn oversize_frames_are_dropped_and_the_next_frame_decodes() {
    let mut bytes = vec![0x55u8; MAX_ENCODED + 100];
    bytes.push(0);
    bytes.extend_from_slice(REQ_PING);
    let results = deframe(&bytes);
    assert_eq!(results[0], Err("oversize".to_string()));
    let frame = results[1].clone().unwrap();
    assert_eq!(decode::<Request>(&frame), Ok((1, Request::Ping)));
    // A frame of exactly MAX_ENCODED bytes is not oversize.
    let mut bytes = vec![0x55u8; MAX_ENCODED];
    bytes.push(0);
    assert_ne!(deframe(&bytes)[0], Err("oversize".to_string()));
}

#[test]
fn random_bytes_never_panic_and_never_pass_as_a_good_frame() {
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut deframer = Deframer::new();
    let mut ended = 0;
    for _ in 0..200_000 {
        let r = next();
        // Zero often enough that frames end.
        let byte = if r.is_multiple_of(23) {
            0
        } else {
            (r >> 8) as u8
        };
        match deframer.feed(byte) {
            Fed::Frame(frame) => {
                ended += 1;
                assert!(decode::<Request>(frame).is_err());
                let _ = decode::<Response>(frame);
            }
            Fed::BadCobs | Fed::Oversize => ended += 1,
            Fed::Pending | Fed::Empty => {}
        }
    }
    assert!(ended > 1000);
    // Random already-deframed frames of every length: rejected, never a panic.
    let mut raw = Vec::new();
    for len in 0..50_000usize {
        raw.clear();
        raw.extend((0..len % 700).map(|_| next() as u8));
        assert!(decode::<Request>(&raw).is_err());
        assert!(decode::<Response>(&raw).is_err());
    }
    // After the noise, a resync delimiter and a good frame.
    let mut results = Vec::new();
    for &b in [&[0u8][..], REQ_INFO].concat().iter() {
        if let Fed::Frame(frame) = deframer.feed(b) {
            results.push(decode::<Request>(frame));
        }
    }
    assert_eq!(results.last(), Some(&Ok((2, Request::Info))));
}
