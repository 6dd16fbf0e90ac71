//! Reading a Hugging Face export directory: config.json, the tokenizer files, model.onnx.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use bertling::format::{SpecialToken, SpecialTokens};
use bertling::Architecture;
use serde_json::Value;
use tokenizers::Tokenizer;

/// What the compiler learned from `config.json`.
#[derive(Debug, Clone)]
pub struct ModelConfig {
    pub architecture: Architecture,
    pub vocab_size: u32,
    pub max_position_embeddings: u32,
    pub pad_token_id: u32,
    pub hidden_size: u32,
    pub num_layers: u32,
    /// The raw file, stored in the model file for reference.
    pub raw: Vec<u8>,
}

/// A Hugging Face-style export directory, read and checked.
pub struct Export {
    pub dir: PathBuf,
    pub onnx_path: PathBuf,
    pub config: ModelConfig,
    /// tokenizer.json with padding and truncation turned off.
    pub tokenizer_json: Vec<u8>,
    pub tokenizer: Tokenizer,
    pub special_tokens: SpecialTokens,
    pub clean_up_tokenization_spaces: bool,
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

fn read_json(path: &Path) -> Result<Value> {
    serde_json::from_slice(&read(path)?)
        .with_context(|| format!("{} is not valid JSON", path.display()))
}

fn u32_field(v: &Value, names: &[&str]) -> Option<u32> {
    names
        .iter()
        .find_map(|n| v.get(*n)?.as_u64())
        .and_then(|x| u32::try_from(x).ok())
}

impl ModelConfig {
    pub fn parse(raw: Vec<u8>, path: &Path) -> Result<ModelConfig> {
        let v: Value = serde_json::from_slice(&raw)
            .with_context(|| format!("{} is not valid JSON", path.display()))?;
        let model_type = v
            .get("model_type")
            .and_then(Value::as_str)
            .with_context(|| format!("{} has no model_type", path.display()))?;
        let supported = Architecture::ALL.map(|a| a.model_type()).join(", ");
        let architecture = Architecture::from_model_type(model_type).with_context(|| {
            format!("unsupported architecture '{model_type}': bertling runs masked language models of the families {supported}")
        })?;
        if let Some(classes) = v.get("architectures").and_then(Value::as_array) {
            let wanted = architecture.masked_lm_class();
            let names: Vec<&str> = classes.iter().filter_map(Value::as_str).collect();
            if !names.is_empty() && !names.contains(&wanted) {
                bail!(
                    "config.json describes {}, not {wanted}: bertling needs a masked-LM export \
                     (optimum-cli export onnx --task fill-mask ...)",
                    names.join(", ")
                );
            }
        }
        let need = |names: &[&str]| {
            u32_field(&v, names)
                .with_context(|| format!("{} has no {}", path.display(), names.join(" / ")))
        };
        Ok(ModelConfig {
            architecture,
            vocab_size: need(&["vocab_size"])?,
            max_position_embeddings: need(&["max_position_embeddings"])?,
            pad_token_id: u32_field(&v, &["pad_token_id"]).unwrap_or(0),
            hidden_size: need(&["hidden_size", "dim"])?,
            num_layers: need(&["num_hidden_layers", "n_layers"])?,
            raw,
        })
    }

    /// The longest token sequence the model's position embeddings allow.
    pub fn max_tokens(&self) -> u32 {
        self.max_position_embeddings
            .saturating_sub(self.architecture.position_offset(self.pad_token_id))
    }
}

/// A token named in tokenizer_config.json / special_tokens_map.json: a string or {"content": ...}.
fn token_text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("content")?.as_str().map(str::to_string),
        _ => None,
    }
}

impl Export {
    pub fn read(dir: &Path) -> Result<Export> {
        if !dir.is_dir() {
            bail!("{} is not a directory: give the folder holding model.onnx, config.json and tokenizer.json", dir.display());
        }
        let onnx_path = dir.join("model.onnx");
        if !onnx_path.is_file() {
            bail!("{} has no model.onnx", dir.display());
        }
        let config_path = dir.join("config.json");
        let config = ModelConfig::parse(read(&config_path)?, &config_path)?;

        let tok_path = dir.join("tokenizer.json");
        let mut tok_json = read_json(&tok_path)?;
        // A request is one unpadded, untruncated sequence: length limits are checked, not applied.
        if let Some(o) = tok_json.as_object_mut() {
            o.insert("padding".into(), Value::Null);
            o.insert("truncation".into(), Value::Null);
        }
        let tokenizer_json = serde_json::to_vec(&tok_json)?;
        let tokenizer = Tokenizer::from_bytes(&tokenizer_json).map_err(|e| {
            anyhow::anyhow!(
                "{} is not a tokenizer the tokenizers library reads: {e}",
                tok_path.display()
            )
        })?;

        let tok_config = read_json(&dir.join("tokenizer_config.json")).unwrap_or(Value::Null);
        let special_map = read_json(&dir.join("special_tokens_map.json")).unwrap_or(Value::Null);
        let named = |key: &str| {
            token_text(tok_config.get(key)).or_else(|| token_text(special_map.get(key)))
        };

        let vocab = tokenizer.get_vocab_size(true) as u32;
        if vocab > config.vocab_size {
            bail!(
                "tokenizer.json has {vocab} tokens but the model embeds only {} (config.json vocab_size): \
                 the tokenizer does not belong to this model",
                config.vocab_size
            );
        }
        let lookup = |text: String| -> Option<SpecialToken> {
            tokenizer
                .token_to_id(&text)
                .map(|id| SpecialToken { id, text })
        };
        let mask_text = named("mask_token")
            .unwrap_or_else(|| config.architecture.default_mask_token().to_string());
        let mask = lookup(mask_text.clone()).with_context(|| {
            format!("the mask token {mask_text} is not in tokenizer.json's vocabulary")
        })?;
        let (cls_default, sep_default, pad_default) = match config.architecture {
            Architecture::Roberta => ("<s>", "</s>", "<pad>"),
            Architecture::Albert => ("[CLS]", "[SEP]", "<pad>"),
            _ => ("[CLS]", "[SEP]", "[PAD]"),
        };
        let special_tokens = SpecialTokens {
            mask,
            pad: lookup(named("pad_token").unwrap_or_else(|| pad_default.into())),
            cls: lookup(named("cls_token").unwrap_or_else(|| cls_default.into())),
            sep: lookup(named("sep_token").unwrap_or_else(|| sep_default.into())),
        };
        let clean_up_tokenization_spaces = tok_config
            .get("clean_up_tokenization_spaces")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        Ok(Export {
            dir: dir.to_path_buf(),
            onnx_path,
            config,
            tokenizer_json,
            tokenizer,
            special_tokens,
            clean_up_tokenization_spaces,
        })
    }
}
