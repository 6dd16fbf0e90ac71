//! The firmware side, as a front-panel microcontroller runs it: encode a request into a stack
//! buffer, then feed the UART's bytes to a [`Deframer`] until the reply with the same id arrives.
//!
//! Builds for `thumbv7em-none-eabihf` with no allocator (`cargo build -p bertling-protocol
//! --example firmware --target thumbv7em-none-eabihf`), where `_start` stands in for the
//! firmware's main loop; on a host, `cargo run -p bertling-protocol --example firmware` runs the
//! same exchange against a canned reply and prints it.
#![cfg_attr(target_os = "none", no_std, no_main)]

use bertling_protocol::{
    decode, encode, Deframer, ErrorCode, Fed, Request, Response, Suggestion, MAX_WIRE,
};

/// What the panel does with a reply.
#[derive(Debug, PartialEq)]
pub enum Shown {
    /// Words to show, best first, with their probability in percent.
    Words(heapless::Vec<(heapless::String<32>, u8), 4>),
    /// The daemon refused.
    Refused(ErrorCode),
    /// Not the reply we wait for (another id, or a notice).
    Nothing,
}

/// Builds the request a keystroke triggers: the typed text with a mask where the next word goes.
pub fn request_for(typed: &str, id: u32, wire: &mut [u8; MAX_WIRE]) -> Option<usize> {
    let mut text = heapless::String::new();
    text.push_str(typed).ok()?;
    text.push_str(" [MASK]").ok()?;
    encode(id, &Request::FillMask { text, k: 4 }, wire).ok()
}

/// Feeds received bytes; returns what to show once the reply to `waiting_for` is complete.
pub fn on_bytes(deframer: &mut Deframer, bytes: &[u8], waiting_for: u32) -> Option<Shown> {
    for &byte in bytes {
        if let Fed::Frame(frame) = deframer.feed(byte) {
            let shown = match decode::<Response>(frame) {
                Ok((id, Response::Suggestions(list))) if id == waiting_for => {
                    let mut words = heapless::Vec::new();
                    for Suggestion { word, probability } in list.iter().take(4) {
                        let percent = (probability * 100.0).clamp(0.0, 100.0) as u8;
                        let _ = words.push((word.clone(), percent));
                    }
                    Shown::Words(words)
                }
                Ok((id, Response::Error(code))) if id == waiting_for => Shown::Refused(code),
                _ => Shown::Nothing,
            };
            if shown != Shown::Nothing {
                return Some(shown);
            }
        }
    }
    None
}

/// A reply as the daemon would send it (the example has no daemon to talk to).
fn canned_reply(id: u32, wire: &mut [u8; MAX_WIRE]) -> usize {
    let mut list = heapless::Vec::new();
    for (word, probability) in [("tea", 0.5f32), ("coffee", 0.25), ("water", 0.125)] {
        let _ = list.push(Suggestion {
            word: heapless::String::try_from(word).unwrap_or_default(),
            probability,
        });
    }
    encode(id, &Response::Suggestions(list), wire).unwrap_or(0)
}

/// One exchange: request, reply, what the panel shows.
pub fn exchange() -> Option<Shown> {
    let mut wire = [0u8; MAX_WIRE];
    let _request_len = request_for("I would like a cup of", 42, &mut wire)?;
    // ... the firmware writes wire[.._request_len] to the UART here ...
    let reply_len = canned_reply(42, &mut wire);
    let mut deframer = Deframer::new();
    on_bytes(&mut deframer, &wire[..reply_len], 42)
}

#[cfg(target_os = "none")]
#[no_mangle]
pub extern "C" fn _start() -> ! {
    let shown = exchange();
    core::hint::black_box(&shown);
    loop {
        core::hint::spin_loop();
    }
}

#[cfg(target_os = "none")]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    loop {
        core::hint::spin_loop();
    }
}

#[cfg(not(target_os = "none"))]
fn main() {
    match exchange() {
        Some(Shown::Words(words)) => {
            for (word, percent) in words {
                println!("{word} {percent}%");
            }
        }
        other => println!("{other:?}"),
    }
}

#[cfg(all(test, not(target_os = "none")))]
mod tests {
    use super::*;

    #[test]
    fn the_exchange_shows_the_canned_words() {
        let Some(Shown::Words(words)) = exchange() else {
            panic!("no words")
        };
        let words: Vec<_> = words.iter().map(|(w, p)| (w.as_str(), *p)).collect();
        assert_eq!(words, [("tea", 50), ("coffee", 25), ("water", 12)]);
    }

    #[test]
    fn replies_to_other_ids_are_ignored() {
        let mut wire = [0u8; MAX_WIRE];
        let n = canned_reply(41, &mut wire);
        assert_eq!(on_bytes(&mut Deframer::new(), &wire[..n], 42), None);
    }
}
