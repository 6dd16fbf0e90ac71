//! The supported model families and what differs between them.

use serde::{Deserialize, Serialize};

/// A supported masked-LM family, as named by Hugging Face's `config.json` `model_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Architecture {
    /// `AlbertForMaskedLM` (SentencePiece-Unigram tokenizer, `[MASK]`).
    Albert,
    /// `DistilBertForMaskedLM` (WordPiece, `[MASK]`).
    DistilBert,
    /// `BertForMaskedLM` (WordPiece, `[MASK]`).
    Bert,
    /// `RobertaForMaskedLM` (byte-level BPE, `<mask>`).
    Roberta,
}

impl Architecture {
    /// All supported families.
    pub const ALL: [Architecture; 4] = [
        Architecture::Albert,
        Architecture::DistilBert,
        Architecture::Bert,
        Architecture::Roberta,
    ];

    /// The `model_type` string of Hugging Face's `config.json`.
    pub fn model_type(self) -> &'static str {
        match self {
            Architecture::Albert => "albert",
            Architecture::DistilBert => "distilbert",
            Architecture::Bert => "bert",
            Architecture::Roberta => "roberta",
        }
    }

    /// The family for a `config.json` `model_type`.
    pub fn from_model_type(model_type: &str) -> Option<Architecture> {
        Self::ALL.into_iter().find(|a| a.model_type() == model_type)
    }

    /// The Hugging Face class that holds the masked-LM head.
    pub fn masked_lm_class(self) -> &'static str {
        match self {
            Architecture::Albert => "AlbertForMaskedLM",
            Architecture::DistilBert => "DistilBertForMaskedLM",
            Architecture::Bert => "BertForMaskedLM",
            Architecture::Roberta => "RobertaForMaskedLM",
        }
    }

    /// The family's own mask token when the tokenizer files do not say.
    pub fn default_mask_token(self) -> &'static str {
        match self {
            Architecture::Roberta => "<mask>",
            _ => "[MASK]",
        }
    }

    /// How many of `max_position_embeddings` are unusable. RoBERTa numbers positions from
    /// `pad_token_id + 1`, so roberta-base (514 positions, pad id 1) takes 512 tokens.
    pub fn position_offset(self, pad_token_id: u32) -> u32 {
        match self {
            Architecture::Roberta => pad_token_id + 1,
            _ => 0,
        }
    }
}

impl std::fmt::Display for Architecture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.model_type())
    }
}
