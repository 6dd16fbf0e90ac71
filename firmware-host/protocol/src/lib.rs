//! The wire protocol between a kiosk's front-panel firmware and the `bertling-kiosk` daemon.
//!
//! `no_std`, no allocator: every message has a fixed maximum size ([`MAX_TEXT`], [`MAX_K`],
//! [`MAX_WORD`], [`MAX_FRAME`]) and lives in `heapless` types, so a microcontroller can hold one on
//! its stack. The public contract is `docs/protocol.md`; in short, a frame on the wire is
//!
//! ```text
//! COBS( version:u8 | id:u32 LE | postcard(body) | crc32:u32 LE ) 0x00
//! ```
//!
//! where the CRC is CRC-32/ISO-HDLC (the zlib/Ethernet CRC) over everything before it.
//!
//! ```
//! use bertling_protocol::{encode, Deframer, Fed, Request, Response, Suggestion, MAX_WIRE};
//!
//! // Firmware side: encode a request.
//! let mut wire = [0u8; MAX_WIRE];
//! let request = Request::FillMask { text: "Paris is the [MASK] of France.".try_into().unwrap(), k: 3 };
//! let n = encode(7, &request, &mut wire).unwrap();
//! assert_eq!(wire[n - 1], 0); // every frame ends with the delimiter
//!
//! // Daemon side: bytes arrive one at a time.
//! let mut deframer = Deframer::new();
//! let mut got = None;
//! for &byte in &wire[..n] {
//!     if let Fed::Frame(frame) = deframer.feed(byte) {
//!         got = Some(bertling_protocol::decode::<Request>(frame).unwrap());
//!     }
//! }
//! assert_eq!(got, Some((7, request)));
//!
//! // And a reply.
//! let mut list = heapless::Vec::new();
//! list.push(Suggestion { word: "capital".try_into().unwrap(), probability: 0.9 }).unwrap();
//! let n = encode(7, &Response::Suggestions(list.clone()), &mut wire).unwrap();
//! let mut deframer = Deframer::new();
//! let reply = wire[..n].iter().find_map(|&b| match deframer.feed(b) {
//!     Fed::Frame(frame) => Some(bertling_protocol::decode::<Response>(frame)),
//!     _ => None,
//! });
//! assert_eq!(reply, Some(Ok((7, Response::Suggestions(list)))));
//! ```
#![no_std]
#![deny(missing_docs)]

use core::fmt;

use serde::{de::DeserializeOwned, Deserialize, Deserializer, Serialize, Serializer};

/// The protocol version this crate speaks: the first byte of every frame.
pub const VERSION: u8 = 1;
/// Maximum length of a request's text, in UTF-8 bytes.
pub const MAX_TEXT: usize = 256;
/// Maximum number of suggestions in a reply, and so the largest `k` a request may ask for.
pub const MAX_K: usize = 16;
/// Maximum length of one suggested word, in UTF-8 bytes (longer words are cut at a character
/// boundary by the daemon).
pub const MAX_WORD: usize = 32;
/// Maximum length of a name in [`Info`], in UTF-8 bytes.
pub const MAX_NAME: usize = 32;
/// Bytes before the body: version (1) and id (4).
pub const HEADER_LEN: usize = 5;
/// Bytes after the body: the CRC-32.
pub const CRC_LEN: usize = 4;
/// The largest body (postcard-encoded message) either side sends: a [`Response::Suggestions`]
/// with [`MAX_K`] words of [`MAX_WORD`] bytes: tag 1 + count 1 + 16 × (length 1 + 32 + f32 4).
pub const MAX_BODY: usize = 1 + 1 + MAX_K * (1 + MAX_WORD + 4);
/// The largest decoded frame: header, body and CRC. Larger frames are dropped as oversize.
pub const MAX_FRAME: usize = HEADER_LEN + MAX_BODY + CRC_LEN;
/// The largest COBS-encoded frame, without the delimiter.
pub const MAX_ENCODED: usize = MAX_FRAME + MAX_FRAME.div_ceil(254);
/// The largest frame on the wire, delimiter included: the buffer size [`encode`] needs at most.
pub const MAX_WIRE: usize = MAX_ENCODED + 1;
/// The id the daemon uses for notices that answer no request (a frame it had to drop). Clients
/// should not use it for requests.
pub const NOTICE_ID: u32 = 0;

const CRC32: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);

/// The CRC this protocol puts at the end of each frame: CRC-32/ISO-HDLC (as zlib's `crc32`).
pub fn crc32(bytes: &[u8]) -> u32 {
    CRC32.checksum(bytes)
}

/// Request text: at most [`MAX_TEXT`] bytes of UTF-8.
pub type Text = heapless::String<MAX_TEXT>;
/// A suggested word: at most [`MAX_WORD`] bytes of UTF-8.
pub type Word = heapless::String<MAX_WORD>;

/// What the firmware asks. The postcard tag of each variant is its position (0 = `Ping`).
// Fixed-size by design: no allocator, so no boxing; a message lives on the stack.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Request {
    /// Is the daemon there? Answered with [`Response::Pong`].
    Ping,
    /// What model and limits? Answered with [`Response::Info`].
    Info,
    /// Predict the word at the single mask (`[MASK]` or the model's own mask token) in `text`;
    /// answered with up to `k` [`Suggestion`]s (1 ≤ `k` ≤ [`MAX_K`]).
    FillMask {
        /// The text, holding exactly one mask.
        text: Text,
        /// How many suggestions.
        k: u8,
    },
    /// Suggest whole words for the end of `text` (the word a person is typing, or the next word
    /// after a space); answered with up to `k` [`Suggestion`]s (an engine without completion
    /// answers [`ErrorCode::Unsupported`]).
    Complete {
        /// The text typed so far.
        text: Text,
        /// How many suggestions.
        k: u8,
    },
    /// Withdraw this client's pending request `target`. Answered with
    /// [`Response::Cancelled`]; `target` itself is then answered with [`ErrorCode::Cancelled`]
    /// unless it had been answered already.
    Cancel {
        /// The id of the request to withdraw.
        target: u32,
    },
}

/// One suggested word with its probability (0..=1, softmax over the vocabulary).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Suggestion {
    /// The word, as the model's vocabulary spells it (`##` continuation pieces included).
    pub word: Word,
    /// Its probability.
    pub probability: f32,
}

/// What the daemon serves, answer to [`Request::Info`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Info {
    /// The protocol version the daemon speaks ([`VERSION`]).
    pub protocol: u8,
    /// The model's architecture (`bert`, `distilbert`, `albert`, `roberta`, ...).
    pub model: heapless::String<MAX_NAME>,
    /// Longest text accepted, in bytes ([`MAX_TEXT`] unless the daemon is stricter).
    pub max_text: u16,
    /// Largest `k` accepted.
    pub max_k: u8,
    /// Whether [`Request::FillMask`] is served.
    pub fill_mask: bool,
    /// Whether [`Request::Complete`] is served.
    pub complete: bool,
}

/// What the daemon answers. Every request gets exactly one response with its id.
// Fixed-size by design: no allocator, so no boxing; a message lives on the stack.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Response {
    /// Answer to [`Request::Ping`].
    Pong,
    /// Answer to [`Request::Info`].
    Info(Info),
    /// Answer to [`Request::FillMask`] / [`Request::Complete`], best first.
    Suggestions(heapless::Vec<Suggestion, MAX_K>),
    /// Answer to [`Request::Cancel`]: whether the target was still pending (and is now answered
    /// with [`ErrorCode::Cancelled`]).
    Cancelled {
        /// The target was pending.
        found: bool,
    },
    /// The request failed; see the code.
    Error(ErrorCode),
}

/// Why a request failed. On the wire one byte (`u8`), so codes a firmware does not know yet
/// still decode, as [`ErrorCode::Other`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// 1: a frame was dropped (COBS error, bad CRC, oversize, too short); sent with
    /// [`NOTICE_ID`] since its id cannot be trusted.
    BadFrame,
    /// 2: the frame is intact but its version byte is not one the daemon speaks.
    UnsupportedVersion,
    /// 3: the frame is intact but its body is not a valid request (unknown tag, truncated
    /// body, trailing bytes, text longer than [`MAX_TEXT`]).
    Malformed,
    /// 4: the text is not valid UTF-8.
    InvalidUtf8,
    /// 5: `k` is 0 or larger than [`MAX_K`].
    BadK,
    /// 6: the text holds no mask.
    NoMask,
    /// 7: the text holds more than one mask.
    TooManyMasks,
    /// 8: the text is longer than the model's positions.
    TextTooLong,
    /// 9: the daemon does not serve this request ([`Request::Complete`] with an engine that
    /// cannot complete text).
    Unsupported,
    /// 10: the daemon's queue is full; try again.
    Busy,
    /// 11: a newer request from the same client replaced this one.
    Superseded,
    /// 12: the client cancelled this request.
    Cancelled,
    /// 13: the model failed to answer (an internal error; logged by the daemon).
    Internal,
    /// The daemon is shutting down.
    ShuttingDown,
    /// A code this version of the crate does not know.
    Other(u8),
}

impl ErrorCode {
    /// The byte on the wire.
    pub fn code(self) -> u8 {
        match self {
            ErrorCode::BadFrame => 1,
            ErrorCode::UnsupportedVersion => 2,
            ErrorCode::Malformed => 3,
            ErrorCode::InvalidUtf8 => 4,
            ErrorCode::BadK => 5,
            ErrorCode::NoMask => 6,
            ErrorCode::TooManyMasks => 7,
            ErrorCode::TextTooLong => 8,
            ErrorCode::Unsupported => 9,
            ErrorCode::Busy => 10,
            ErrorCode::Superseded => 11,
            ErrorCode::Cancelled => 12,
            ErrorCode::Internal => 13,
            ErrorCode::ShuttingDown => 14,
            ErrorCode::Other(code) => code,
        }
    }

    /// The code for a byte from the wire.
    pub fn from_code(code: u8) -> ErrorCode {
        match code {
            1 => ErrorCode::BadFrame,
            2 => ErrorCode::UnsupportedVersion,
            3 => ErrorCode::Malformed,
            4 => ErrorCode::InvalidUtf8,
            5 => ErrorCode::BadK,
            6 => ErrorCode::NoMask,
            7 => ErrorCode::TooManyMasks,
            8 => ErrorCode::TextTooLong,
            9 => ErrorCode::Unsupported,
            10 => ErrorCode::Busy,
            11 => ErrorCode::Superseded,
            12 => ErrorCode::Cancelled,
            13 => ErrorCode::Internal,
            14 => ErrorCode::ShuttingDown,
            other => ErrorCode::Other(other),
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            ErrorCode::BadFrame => "bad frame (dropped)",
            ErrorCode::UnsupportedVersion => "unsupported protocol version",
            ErrorCode::Malformed => "malformed request",
            ErrorCode::InvalidUtf8 => "text is not valid UTF-8",
            ErrorCode::BadK => "k out of range",
            ErrorCode::NoMask => "the text holds no mask",
            ErrorCode::TooManyMasks => "the text holds more than one mask",
            ErrorCode::TextTooLong => "the text is too long for the model",
            ErrorCode::Unsupported => "not supported by this daemon",
            ErrorCode::Busy => "busy: queue full",
            ErrorCode::Superseded => "superseded by a newer request",
            ErrorCode::Cancelled => "cancelled",
            ErrorCode::Internal => "internal error",
            ErrorCode::ShuttingDown => "shutting down",
            ErrorCode::Other(code) => return write!(f, "error code {code}"),
        };
        f.write_str(text)
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u8(self.code())
    }
}

impl<'de> Deserialize<'de> for ErrorCode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        u8::deserialize(deserializer).map(ErrorCode::from_code)
    }
}

/// Why a message could not be encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncodeError {
    /// The output buffer is smaller than the frame (a [`MAX_WIRE`]-byte buffer always fits).
    BufferTooSmall,
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("output buffer too small for the frame")
    }
}

/// Encodes `message` with `id` as one wire frame (COBS, delimiter included) into `out`; returns
/// the number of bytes written. `out` of [`MAX_WIRE`] bytes always suffices for the messages of
/// this crate.
pub fn encode<T: Serialize>(id: u32, message: &T, out: &mut [u8]) -> Result<usize, EncodeError> {
    let mut raw = [0u8; MAX_FRAME];
    raw[0] = VERSION;
    raw[1..HEADER_LEN].copy_from_slice(&id.to_le_bytes());
    let body_len = postcard::to_slice(message, &mut raw[HEADER_LEN..MAX_FRAME - CRC_LEN])
        .map_err(|_| EncodeError::BufferTooSmall)?
        .len();
    let crc_at = HEADER_LEN + body_len;
    let crc = crc32(&raw[..crc_at]);
    raw[crc_at..crc_at + CRC_LEN].copy_from_slice(&crc.to_le_bytes());
    let raw = &raw[..crc_at + CRC_LEN];
    let n = cobs::try_encode(raw, out).map_err(|_| EncodeError::BufferTooSmall)?;
    let delimiter = out.get_mut(n).ok_or(EncodeError::BufferTooSmall)?;
    *delimiter = 0;
    Ok(n + 1)
}

/// Why a decoded frame was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// Shorter than a header and a CRC: dropped.
    TooShort,
    /// The CRC does not match: dropped (the id cannot be trusted).
    BadCrc,
    /// Intact, but another protocol version: answerable with
    /// [`ErrorCode::UnsupportedVersion`].
    UnsupportedVersion {
        /// The frame's id.
        id: u32,
        /// The version byte it carried.
        version: u8,
    },
    /// Intact, but the body does not decode: answerable.
    Body {
        /// The frame's id.
        id: u32,
        /// [`ErrorCode::Malformed`] or [`ErrorCode::InvalidUtf8`].
        code: ErrorCode,
    },
}

impl DecodeError {
    /// The error reply this failure deserves: `(id, code)`; frames whose id cannot be trusted
    /// get a [`NOTICE_ID`] notice with [`ErrorCode::BadFrame`].
    pub fn reply(&self) -> (u32, ErrorCode) {
        match *self {
            DecodeError::TooShort | DecodeError::BadCrc => (NOTICE_ID, ErrorCode::BadFrame),
            DecodeError::UnsupportedVersion { id, .. } => (id, ErrorCode::UnsupportedVersion),
            DecodeError::Body { id, code } => (id, code),
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::TooShort => f.write_str("frame too short"),
            DecodeError::BadCrc => f.write_str("frame CRC mismatch"),
            DecodeError::UnsupportedVersion { id, version } => {
                write!(f, "request {id}: unsupported protocol version {version}")
            }
            DecodeError::Body { id, code } => write!(f, "request {id}: {code}"),
        }
    }
}

/// Checks and decodes one COBS-decoded frame (what [`Deframer::feed`] hands out): version, CRC,
/// then the body as `T`. Never panics, whatever the bytes.
pub fn decode<T: DeserializeOwned>(frame: &[u8]) -> Result<(u32, T), DecodeError> {
    if frame.len() < HEADER_LEN + CRC_LEN {
        return Err(DecodeError::TooShort);
    }
    let (covered, crc_bytes) = frame.split_at(frame.len() - CRC_LEN);
    let mut crc = [0u8; CRC_LEN];
    crc.copy_from_slice(crc_bytes);
    if crc32(covered) != u32::from_le_bytes(crc) {
        return Err(DecodeError::BadCrc);
    }
    let mut id = [0u8; 4];
    id.copy_from_slice(&covered[1..HEADER_LEN]);
    let id = u32::from_le_bytes(id);
    if covered[0] != VERSION {
        return Err(DecodeError::UnsupportedVersion {
            id,
            version: covered[0],
        });
    }
    let body = &covered[HEADER_LEN..];
    match postcard::take_from_bytes::<T>(body) {
        Ok((message, [])) => Ok((id, message)),
        Ok(_) => Err(DecodeError::Body {
            id,
            code: ErrorCode::Malformed,
        }),
        Err(postcard::Error::DeserializeBadUtf8) => Err(DecodeError::Body {
            id,
            code: ErrorCode::InvalidUtf8,
        }),
        Err(_) => Err(DecodeError::Body {
            id,
            code: ErrorCode::Malformed,
        }),
    }
}

/// What [`Deframer::feed`] saw.
#[derive(Debug, PartialEq, Eq)]
pub enum Fed<'a> {
    /// The byte was stored; no frame ended yet.
    Pending,
    /// A delimiter ended an empty frame (a lone `0x00`, which senders may use to resynchronize):
    /// ignore it.
    Empty,
    /// A frame ended: its COBS-decoded bytes, to pass to [`decode`].
    Frame(&'a [u8]),
    /// A frame ended but was not valid COBS: dropped.
    BadCobs,
    /// A frame ended that was longer than [`MAX_ENCODED`]: dropped (its bytes were discarded as
    /// they came).
    Oversize,
}

/// Splits a byte stream into frames at `0x00` delimiters and undoes COBS, in a fixed
/// [`MAX_ENCODED`]-byte buffer.
///
/// ```
/// use bertling_protocol::{Deframer, Fed};
/// let mut deframer = Deframer::new();
/// assert_eq!(deframer.feed(0x00), Fed::Empty);
/// assert_eq!(deframer.feed(0x02), Fed::Pending);
/// assert_eq!(deframer.feed(0x07), Fed::Pending);
/// assert_eq!(deframer.feed(0x00), Fed::Frame(&[0x07]));
/// ```
pub struct Deframer {
    buf: [u8; MAX_ENCODED],
    len: usize,
    overflow: bool,
}

impl Default for Deframer {
    fn default() -> Self {
        Deframer::new()
    }
}

impl Deframer {
    /// An empty deframer.
    pub const fn new() -> Deframer {
        Deframer {
            buf: [0; MAX_ENCODED],
            len: 0,
            overflow: false,
        }
    }

    /// Forgets a partly received frame.
    pub fn reset(&mut self) {
        self.len = 0;
        self.overflow = false;
    }

    /// Takes one byte from the stream.
    pub fn feed(&mut self, byte: u8) -> Fed<'_> {
        if byte != 0 {
            if self.len < MAX_ENCODED {
                self.buf[self.len] = byte;
                self.len += 1;
            } else {
                self.overflow = true;
            }
            return Fed::Pending;
        }
        let len = core::mem::replace(&mut self.len, 0);
        if core::mem::replace(&mut self.overflow, false) {
            return Fed::Oversize;
        }
        if len == 0 {
            return Fed::Empty;
        }
        match cobs::decode_in_place(&mut self.buf[..len]) {
            Ok(n) => Fed::Frame(&self.buf[..n]),
            Err(_) => Fed::BadCobs,
        }
    }
}
