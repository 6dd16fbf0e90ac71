//! The bertling model file: layout, manifest, writer and validating reader.
//!
//! This layout is a public contract, documented in `docs/model-format.md`. In short, all integers
//! little-endian:
//!
//! ```text
//! offset  size  field
//! 0       8     magic b"BERTLNG\0"
//! 8       4     format version (u32)           -- FORMAT_VERSION
//! 12      4     flags (u32, zero)
//! 16      8     manifest offset (u64)
//! 24      8     manifest length (u64)
//! 32      4     manifest CRC-32 (u32)
//! 36      8     file length (u64)              -- detects truncation before anything else
//! 44      16    reserved, zero
//! 60      4     header CRC-32 of bytes 0..60
//! 64      ...   sections, each starting at a multiple of 64, zero padding between them
//! ...     ...   manifest (postcard), after the last section
//! ```
//!
//! Every byte of the file is covered: the header by its CRC, the manifest by the CRC in the header,
//! each section by the CRC in the manifest, and padding must be zero. A corrupted byte therefore
//! always gives an error, never a silently different model.

use serde::{Deserialize, Serialize};

use crate::architecture::Architecture;

/// The eight bytes every bertling model file starts with.
pub const MAGIC: [u8; 8] = *b"BERTLNG\0";
/// The format version this crate writes, and the newest it reads.
///
/// Version 2 added [`Precision::Int8`]; version 3, the `activation_max`, `layout` and `channels`
/// attributes of the `bertling_linear_i8` operator (12-bit activations, panel-packed weights with
/// a scale per 64 inputs); version 4, its `activation_group` attribute (7-bit activations with a
/// scale per 64 inputs, [`crate::int8::a7`]); version 5, [`OutputKind::MaskedLayer`] (the last
/// encoder layer run at the masks); version 6, the `activation_asymmetric` attribute (7-bit codes
/// with a zero point per 64 inputs); version 7, grouped operators with `activation_max` 127
/// (8-bit asymmetric codes per 64 inputs, [`crate::int8::a8`]). Version 1 to 6 files have the same
/// layout and manifest and still load.
pub const FORMAT_VERSION: u32 = 7;
/// The oldest format version this crate reads.
pub const OLDEST_FORMAT_VERSION: u32 = 1;
/// Size of the fixed header.
pub const HEADER_LEN: usize = 64;
/// Alignment of every section's start, in bytes.
pub const ALIGN: usize = 64;
/// The conventional file extension.
pub const EXTENSION: &str = "bertling";

/// Why a byte buffer is not a valid bertling model file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// The buffer does not start with [`MAGIC`].
    #[error("not a bertling model file (bad magic bytes); compile an ONNX export with `bertling compile`")]
    BadMagic,
    /// The file is shorter than its header says.
    #[error("the model file is truncated: {actual} bytes, the header says {expected}")]
    Truncated {
        /// Bytes present.
        actual: u64,
        /// Bytes the header declares.
        expected: u64,
    },
    /// The file is longer than its header says.
    #[error("the model file has {extra} unexpected trailing bytes")]
    TrailingBytes {
        /// Bytes beyond the declared length.
        extra: u64,
    },
    /// The file was written by a newer bertling (or claims a version that never existed).
    #[error("model file format version {found} is not supported: this bertling reads versions 1 to {supported}; recompile the model or upgrade bertling")]
    UnsupportedVersion {
        /// Version in the file.
        found: u32,
        /// Version this build reads.
        supported: u32,
    },
    /// A checksum did not match: the file is corrupted.
    #[error("the model file is corrupted: checksum mismatch in {what}")]
    Checksum {
        /// Which part failed.
        what: String,
    },
    /// A structural inconsistency (offsets out of range, overlapping sections, ...).
    #[error("the model file is malformed: {0}")]
    Malformed(String),
}

/// Numeric precision of the stored graph's weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Precision {
    /// 32-bit floating point weights and activations.
    F32,
    /// Matrix products with 8-bit integer weights (per output channel) and activations (per row,
    /// quantized at run time), i32 accumulation; embedding tables as 8-bit rows. Added in format
    /// version 2.
    Int8,
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Precision::F32 => f.write_str("fp32"),
            Precision::Int8 => f.write_str("int8"),
        }
    }
}

/// What a graph input carries. The graph's inputs appear in the manifest in graph order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum InputKind {
    /// Token ids, i64 `[1, S]`.
    InputIds,
    /// 1 for real tokens, i64 `[1, S]`.
    AttentionMask,
    /// Segment ids, i64 `[1, S]`.
    TokenTypeIds,
}

impl InputKind {
    /// The conventional ONNX input name.
    pub fn onnx_name(self) -> &'static str {
        match self {
            InputKind::InputIds => "input_ids",
            InputKind::AttentionMask => "attention_mask",
            InputKind::TokenTypeIds => "token_type_ids",
        }
    }

    /// The kind for a conventional ONNX input name.
    pub fn from_onnx_name(name: &str) -> Option<InputKind> {
        [
            InputKind::InputIds,
            InputKind::AttentionMask,
            InputKind::TokenTypeIds,
        ]
        .into_iter()
        .find(|k| k.onnx_name() == name)
    }
}

/// One special token: its id and its text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpecialToken {
    /// The token id.
    pub id: u32,
    /// The token's text in the vocabulary, e.g. `[MASK]` or `<mask>`.
    pub text: String,
}

/// The special tokens the runtime needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpecialTokens {
    /// The mask token.
    pub mask: SpecialToken,
    /// The padding token, if the tokenizer has one.
    pub pad: Option<SpecialToken>,
    /// Sequence start (`[CLS]`, `<s>`).
    pub cls: Option<SpecialToken>,
    /// Sequence end / separator (`[SEP]`, `</s>`).
    pub sep: Option<SpecialToken>,
}

/// How the sequence length is handled by the stored graph.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SequencePlan {
    /// One graph with a symbolic sequence length, resolved on each request.
    Symbolic {
        /// The symbol's name in the graph.
        symbol: String,
    },
}

/// How the stored graphs produce logits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OutputKind {
    /// One graph (section `Graph`) whose output is logits `[1, S, vocab]` for every position.
    AllPositionLogits,
    /// Two graphs: the encoder (section `Graph`) outputs hidden states `[.., S, hidden]`; the runtime
    /// gathers the rows of the mask positions into `[.., M, hidden]`, and the head (section `Head`)
    /// turns them into logits `[.., M, vocab]`. The vocabulary projection runs only at the masks.
    MaskedHead {
        /// Width of a hidden-state row.
        hidden: u32,
    },
    /// Two graphs, the head taking more than the head: the encoder (section `Graph`) outputs
    /// hidden states `[.., S, hidden]` (the last encoder layer's input); the head (section `Head`)
    /// takes them whole and the mask positions (i64 `[M]`, text order) and returns logits
    /// `[.., M, vocab]`. It runs the last layer's keys and values at every position and the rest
    /// of that layer, and the vocabulary projection, at the masks only (format 5).
    MaskedLayer {
        /// Width of a hidden-state row.
        hidden: u32,
    },
}

/// What a section holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SectionKind {
    /// The Hugging Face `tokenizer.json`, verbatim.
    Tokenizer,
    /// The tract graph ([`crate::graph::StoredGraph`]: NNEF text and a tensor table): the whole
    /// model, or the encoder when the output kind is [`OutputKind::MaskedHead`] or
    /// [`OutputKind::MaskedLayer`].
    Graph,
    /// The masked-LM head, with [`OutputKind::MaskedHead`] or [`OutputKind::MaskedLayer`].
    Head,
    /// The tensor store every graph's tensors live in, each distinct tensor once.
    Tensors,
    /// The export's `config.json`, verbatim, for reference.
    Config,
}

/// One tensor of the `Tensors` section: NNEF tensor-file bytes (a 128-byte header, then the data).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorBlob {
    /// Offset from the start of the `Tensors` section; a multiple of [`ALIGN`].
    pub offset: u64,
    /// Length in bytes.
    pub len: u64,
}

/// Where a section lives in the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Section {
    /// What it holds.
    pub kind: SectionKind,
    /// Offset from the file's start; a multiple of [`ALIGN`].
    pub offset: u64,
    /// Length in bytes.
    pub len: u64,
    /// CRC-32 (IEEE) of its bytes.
    pub crc32: u32,
}

/// Everything the runtime needs to know about a model, stored postcard-encoded in the file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// The bertling version that wrote the file.
    pub bertling_version: String,
    /// The tract version whose NNEF dialect the graph is written in.
    pub tract_version: String,
    /// The model family.
    pub architecture: Architecture,
    /// Weight precision.
    pub precision: Precision,
    /// Rows of the output projection (the model's `vocab_size`).
    pub vocab_size: u32,
    /// The longest token sequence (special tokens included) the model accepts.
    pub max_tokens: u32,
    /// Hidden size, for information.
    pub hidden_size: u32,
    /// Number of layers, for information.
    pub num_layers: u32,
    /// Special tokens.
    pub special_tokens: SpecialTokens,
    /// Whether decoded sequences get Hugging Face's `clean_up_tokenization_spaces` treatment.
    pub clean_up_tokenization_spaces: bool,
    /// The graph's inputs, in order.
    pub inputs: Vec<InputKind>,
    /// What the graph's output holds.
    pub output: OutputKind,
    /// Sequence-length handling.
    pub sequence: SequencePlan,
    /// The tensor table of the `Tensors` section.
    pub tensors: Vec<TensorBlob>,
    /// The section table.
    pub sections: Vec<Section>,
}

impl Manifest {
    /// The section of a given kind, if present.
    pub fn section(&self, kind: SectionKind) -> Option<&Section> {
        self.sections.iter().find(|s| s.kind == kind)
    }
}

fn crc(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

fn pad_to_align(out: &mut Vec<u8>) {
    let rem = out.len() % ALIGN;
    if rem != 0 {
        out.resize(out.len() + ALIGN - rem, 0);
    }
}

/// Serializes a manifest (whose `sections` are filled in here) and the section payloads into one
/// file image.
///
/// ```
/// use bertling::format::{self, SectionKind};
/// # let manifest = bertling::format::tests_support::sample_manifest();
/// let bytes = format::write(manifest, &[(SectionKind::Tokenizer, b"{}".as_slice())]).unwrap();
/// let file = format::ModelFile::parse(&bytes).unwrap();
/// assert_eq!(file.section(SectionKind::Tokenizer).unwrap(), b"{}");
/// ```
pub fn write(
    mut manifest: Manifest,
    sections: &[(SectionKind, &[u8])],
) -> Result<Vec<u8>, FormatError> {
    let mut out = vec![0u8; HEADER_LEN];
    manifest.sections.clear();
    for (kind, payload) in sections {
        if manifest.section(*kind).is_some() {
            return Err(FormatError::Malformed(format!(
                "section {kind:?} given twice"
            )));
        }
        pad_to_align(&mut out);
        manifest.sections.push(Section {
            kind: *kind,
            offset: out.len() as u64,
            len: payload.len() as u64,
            crc32: crc(payload),
        });
        out.extend_from_slice(payload);
    }
    pad_to_align(&mut out);
    let manifest_bytes = postcard::to_allocvec(&manifest)
        .map_err(|e| FormatError::Malformed(format!("manifest: {e}")))?;
    let manifest_offset = out.len() as u64;
    out.extend_from_slice(&manifest_bytes);
    let file_len = out.len() as u64;

    let h = &mut out[..HEADER_LEN];
    h[0..8].copy_from_slice(&MAGIC);
    h[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h[12..16].copy_from_slice(&0u32.to_le_bytes());
    h[16..24].copy_from_slice(&manifest_offset.to_le_bytes());
    h[24..32].copy_from_slice(&(manifest_bytes.len() as u64).to_le_bytes());
    h[32..36].copy_from_slice(&crc(&manifest_bytes).to_le_bytes());
    h[36..44].copy_from_slice(&file_len.to_le_bytes());
    let header_crc = crc(&h[..60]);
    h[60..64].copy_from_slice(&header_crc.to_le_bytes());
    Ok(out)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// A validated view of a model file image.
#[derive(Debug)]
pub struct ModelFile<'a> {
    bytes: &'a [u8],
    /// The file's format version (between [`OLDEST_FORMAT_VERSION`] and [`FORMAT_VERSION`]).
    pub version: u32,
    /// The decoded manifest.
    pub manifest: Manifest,
}

impl<'a> ModelFile<'a> {
    /// Validates everything: magic, version, lengths, every checksum, the section table, padding.
    pub fn parse(bytes: &'a [u8]) -> Result<ModelFile<'a>, FormatError> {
        if bytes.len() < MAGIC.len() || bytes[..MAGIC.len()] != MAGIC {
            return Err(FormatError::BadMagic);
        }
        if bytes.len() < HEADER_LEN {
            return Err(FormatError::Truncated {
                actual: bytes.len() as u64,
                expected: HEADER_LEN as u64,
            });
        }
        let h = &bytes[..HEADER_LEN];
        if crc(&h[..60]) != u32_at(h, 60) {
            return Err(FormatError::Checksum {
                what: "the header".into(),
            });
        }
        let version = u32_at(h, 8);
        if !(OLDEST_FORMAT_VERSION..=FORMAT_VERSION).contains(&version) {
            return Err(FormatError::UnsupportedVersion {
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        if u32_at(h, 12) != 0 || h[44..60].iter().any(|&b| b != 0) {
            return Err(FormatError::Malformed(
                "unknown header flags or reserved bytes set".into(),
            ));
        }
        let file_len = u64_at(h, 36);
        let actual = bytes.len() as u64;
        if actual < file_len {
            return Err(FormatError::Truncated {
                actual,
                expected: file_len,
            });
        }
        if actual > file_len {
            return Err(FormatError::TrailingBytes {
                extra: actual - file_len,
            });
        }
        let m_off = u64_at(h, 16);
        let m_len = u64_at(h, 24);
        let m_end = m_off
            .checked_add(m_len)
            .filter(|&e| m_off >= HEADER_LEN as u64 && e == file_len)
            .ok_or_else(|| FormatError::Malformed("manifest out of range".into()))?;
        let manifest_bytes = &bytes[m_off as usize..m_end as usize];
        if crc(manifest_bytes) != u32_at(h, 32) {
            return Err(FormatError::Checksum {
                what: "the manifest".into(),
            });
        }
        let manifest: Manifest = postcard::from_bytes(manifest_bytes)
            .map_err(|e| FormatError::Malformed(format!("manifest does not decode: {e}")))?;
        if version < 5 && matches!(manifest.output, OutputKind::MaskedLayer { .. }) {
            return Err(FormatError::Malformed(format!(
                "a format {version} file cannot have a MaskedLayer head (format 5)"
            )));
        }

        // Sections: in file order, aligned, within [HEADER_LEN, m_off), not overlapping, zero padding.
        let mut cursor = HEADER_LEN as u64;
        for s in &manifest.sections {
            let end = s.offset.checked_add(s.len);
            let ok = s.offset % ALIGN as u64 == 0
                && s.offset >= cursor
                && end.is_some_and(|e| e <= m_off);
            if !ok {
                return Err(FormatError::Malformed(format!(
                    "section {:?} out of place",
                    s.kind
                )));
            }
            if bytes[cursor as usize..s.offset as usize]
                .iter()
                .any(|&b| b != 0)
            {
                return Err(FormatError::Checksum {
                    what: format!("the padding before section {:?}", s.kind),
                });
            }
            let payload = &bytes[s.offset as usize..(s.offset + s.len) as usize];
            if crc(payload) != s.crc32 {
                return Err(FormatError::Checksum {
                    what: format!("section {:?}", s.kind),
                });
            }
            cursor = s.offset + s.len;
        }
        if bytes[cursor as usize..m_off as usize]
            .iter()
            .any(|&b| b != 0)
        {
            return Err(FormatError::Checksum {
                what: "the padding before the manifest".into(),
            });
        }
        if m_off - cursor >= ALIGN as u64 {
            return Err(FormatError::Malformed(
                "unexpected gap before the manifest".into(),
            ));
        }
        for (i, s) in manifest.sections.iter().enumerate() {
            if manifest.sections[..i].iter().any(|o| o.kind == s.kind) {
                return Err(FormatError::Malformed(format!(
                    "section {:?} appears twice",
                    s.kind
                )));
            }
        }
        Ok(ModelFile {
            bytes,
            version,
            manifest,
        })
    }

    /// The payload of a section, if present.
    pub fn section(&self, kind: SectionKind) -> Option<&'a [u8]> {
        self.manifest
            .section(kind)
            .map(|s| &self.bytes[s.offset as usize..(s.offset + s.len) as usize])
    }

    /// The whole file image.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }
}

#[doc(hidden)]
pub mod tests_support {
    //! A sample manifest for doc tests and unit tests.
    use super::*;

    /// A small, valid manifest.
    pub fn sample_manifest() -> Manifest {
        Manifest {
            bertling_version: "0.0.0".into(),
            tract_version: "0.0.0".into(),
            architecture: Architecture::Bert,
            precision: Precision::F32,
            vocab_size: 10,
            max_tokens: 8,
            hidden_size: 4,
            num_layers: 1,
            special_tokens: SpecialTokens {
                mask: SpecialToken {
                    id: 3,
                    text: "[MASK]".into(),
                },
                pad: None,
                cls: None,
                sep: None,
            },
            clean_up_tokenization_spaces: true,
            inputs: vec![InputKind::InputIds],
            output: OutputKind::AllPositionLogits,
            sequence: SequencePlan::Symbolic { symbol: "S".into() },
            tensors: vec![],
            sections: vec![],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::tests_support::sample_manifest;
    use super::*;

    fn sample() -> Vec<u8> {
        write(
            sample_manifest(),
            &[
                (SectionKind::Tokenizer, b"tokenizer bytes"),
                (SectionKind::Graph, &[7u8; 1000]),
            ],
        )
        .unwrap()
    }

    #[test]
    fn round_trip() {
        let bytes = sample();
        let f = ModelFile::parse(&bytes).unwrap();
        assert_eq!(
            f.section(SectionKind::Tokenizer).unwrap(),
            b"tokenizer bytes"
        );
        assert_eq!(f.section(SectionKind::Graph).unwrap(), &[7u8; 1000][..]);
        assert!(f.section(SectionKind::Config).is_none());
        for s in &f.manifest.sections {
            assert_eq!(s.offset % ALIGN as u64, 0);
        }
        let mut expected = sample_manifest();
        expected.sections = f.manifest.sections.clone();
        assert_eq!(f.manifest, expected);
    }

    #[test]
    fn every_single_byte_corruption_is_detected() {
        let bytes = sample();
        for i in 0..bytes.len() {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut b = bytes.clone();
                b[i] ^= flip;
                assert!(
                    ModelFile::parse(&b).is_err(),
                    "flip {flip:#x} at byte {i} went unnoticed"
                );
            }
        }
    }

    #[test]
    fn every_truncation_is_detected() {
        let bytes = sample();
        for len in 0..bytes.len() {
            let err = ModelFile::parse(&bytes[..len]).unwrap_err();
            if len >= HEADER_LEN {
                assert!(
                    matches!(err, FormatError::Truncated { .. }),
                    "at {len}: {err}"
                );
            }
        }
    }

    #[test]
    fn newer_version_is_refused_with_a_clear_error() {
        for version in [0, FORMAT_VERSION + 1, u32::MAX] {
            let mut bytes = sample();
            bytes[8..12].copy_from_slice(&version.to_le_bytes());
            let c = crc(&bytes[..60]);
            bytes[60..64].copy_from_slice(&c.to_le_bytes());
            let err = ModelFile::parse(&bytes).unwrap_err();
            assert_eq!(
                err,
                FormatError::UnsupportedVersion {
                    found: version,
                    supported: FORMAT_VERSION
                }
            );
            assert!(err.to_string().contains(&format!("version {version}")));
        }
    }

    #[test]
    fn a_masked_layer_head_needs_version_5() {
        let mut manifest = sample_manifest();
        manifest.output = OutputKind::MaskedLayer { hidden: 4 };
        let mut bytes = write(manifest, &[(SectionKind::Tokenizer, b"{}".as_slice())]).unwrap();
        assert_eq!(
            ModelFile::parse(&bytes).unwrap().manifest.output,
            OutputKind::MaskedLayer { hidden: 4 }
        );
        bytes[8..12].copy_from_slice(&4u32.to_le_bytes());
        let c = crc(&bytes[..60]);
        bytes[60..64].copy_from_slice(&c.to_le_bytes());
        let err = ModelFile::parse(&bytes).unwrap_err();
        assert!(
            matches!(&err, FormatError::Malformed(m) if m.contains("MaskedLayer")),
            "{err}"
        );
    }

    #[test]
    fn version_1_files_still_load() {
        // A version 1 file is a version 2 file that cannot say Int8: same header, same manifest.
        let mut bytes = sample();
        bytes[8..12].copy_from_slice(&1u32.to_le_bytes());
        let c = crc(&bytes[..60]);
        bytes[60..64].copy_from_slice(&c.to_le_bytes());
        let file = ModelFile::parse(&bytes).unwrap();
        assert_eq!(file.manifest.precision, Precision::F32);
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let mut bytes = sample();
        bytes.push(0);
        assert_eq!(
            ModelFile::parse(&bytes).unwrap_err(),
            FormatError::TrailingBytes { extra: 1 }
        );
    }

    #[test]
    fn not_a_model() {
        assert_eq!(
            ModelFile::parse(b"\x08\x01\x12\x04onnx").unwrap_err(),
            FormatError::BadMagic
        );
        assert_eq!(ModelFile::parse(b"").unwrap_err(), FormatError::BadMagic);
    }
}
