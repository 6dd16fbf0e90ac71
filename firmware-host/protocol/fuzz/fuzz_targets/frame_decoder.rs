//! Any byte stream through the deframer and both decoders: no panic, no frame larger than the
//! documented maximum, and every accepted request re-encodes to a frame that decodes to itself.
#![no_main]

use bertling_protocol::{decode, encode, Deframer, Fed, Request, Response, MAX_ENCODED, MAX_WIRE};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut deframer = Deframer::new();
    for &byte in data {
        if let Fed::Frame(frame) = deframer.feed(byte) {
            assert!(frame.len() <= MAX_ENCODED);
            let _ = decode::<Response>(frame);
            match decode::<Request>(frame) {
                Ok((id, request)) => {
                    let mut wire = [0u8; MAX_WIRE];
                    let n = encode(id, &request, &mut wire).expect("a decoded request re-encodes");
                    let mut again = Deframer::new();
                    let mut back = None;
                    for &b in &wire[..n] {
                        if let Fed::Frame(f) = again.feed(b) {
                            back = Some(decode::<Request>(f).expect("re-encoded frame decodes"));
                        }
                    }
                    assert_eq!(back, Some((id, request)));
                }
                Err(e) => {
                    let _ = e.reply();
                }
            }
        }
    }
    // And the whole input as one already-deframed frame.
    let _ = decode::<Request>(data);
});
