//! The tract side: how graphs and their tensors are stored, and loading them back.
//!
//! A stored graph is the NNEF text of a decluttered tract model plus a table from each tensor label
//! it uses to an entry of the file's shared tensor store. Tensors with identical bytes are stored
//! once, across every graph of the file: ALBERT's shared layer weights, which tract's decluttering
//! turns into one constant per use, and the weights the encoder and the head both use.
//!
//! Graphs use tract's core operators, tract's ONNX extensions, and one registry of our own,
//! `bertling`, for the operators tract's decluttering produces but tract 0.23's NNEF cannot write
//! (the exact, erf-based GELU that every BERT-family export contains) and the i8 x i8 -> i32 matrix
//! product of int8 graphs ([`crate::int8`]).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use tract_core::ops::nn::GeluExact;
use tract_nnef::ast::{Identifier, ProtoModel};
use tract_nnef::framework::Nnef;
use tract_nnef::internal::*;
use tract_onnx_opl::WithOnnx;

use crate::format::{InputKind, TensorBlob};

/// The tract version this crate is built against; stored in every model file.
pub const TRACT_VERSION: &str = "0.23.9";

/// The NNEF framework with every operator registry a stored graph may use. The compiler writes
/// with the same set the runtime reads with.
pub fn nnef() -> Nnef {
    let mut nnef = tract_nnef::nnef().with_onnx();
    nnef.registries.push(bertling_registry());
    nnef
}

/// Operators bertling serializes itself. Graphs that use them declare `extension bertling`.
pub fn bertling_registry() -> Registry {
    let mut reg = Registry::new("bertling").with_doc("Operators bertling serializes itself.");
    // GeluExact is a zero-sized element-wise op: tract looks such ops up by type, and they take
    // one tensor input.
    reg.register_unit_element_wise("bertling_gelu_exact", &GeluExact {});
    crate::int8::register(&mut reg);
    reg
}

/// The graph inputs for one token sequence, in the graph's order: each an i64 tensor `[1, n]`
/// (token ids, ones for the attention mask, or segment ids).
pub fn input_tensors(
    kinds: &[InputKind],
    ids: &[u32],
    type_ids: &[u32],
) -> TractResult<TVec<TValue>> {
    let n = ids.len();
    kinds
        .iter()
        .map(|kind| {
            let values: Vec<i64> = match kind {
                InputKind::InputIds => ids.iter().map(|&t| t as i64).collect(),
                InputKind::AttentionMask => vec![1; n],
                InputKind::TokenTypeIds => type_ids.iter().map(|&t| t as i64).collect(),
            };
            Ok(Tensor::from_shape(&[1, n], &values)?.into_tvalue())
        })
        .collect()
}

/// A graph as stored in a `Graph` or `Head` section (postcard-encoded).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredGraph {
    /// The `graph.nnef` document.
    pub nnef: String,
    /// Each tensor label the document uses, and its index in the file's tensor table.
    pub tensors: Vec<(String, u32)>,
}

/// Collects the tensors of every graph written to one file, each distinct content once.
#[derive(Default)]
pub struct TensorStoreWriter {
    data: Vec<u8>,
    blobs: Vec<TensorBlob>,
    by_hash: HashMap<u64, Vec<u32>>,
}

impl TensorStoreWriter {
    fn intern(&mut self, bytes: &[u8]) -> u32 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        bytes.hash(&mut h);
        let hash = h.finish();
        let candidates = self.by_hash.entry(hash).or_default();
        for &ix in candidates.iter() {
            let b = &self.blobs[ix as usize];
            if &self.data[b.offset as usize..(b.offset + b.len) as usize] == bytes {
                return ix;
            }
        }
        let rem = self.data.len() % crate::format::ALIGN;
        if rem != 0 {
            self.data
                .resize(self.data.len() + crate::format::ALIGN - rem, 0);
        }
        let ix = self.blobs.len() as u32;
        self.blobs.push(TensorBlob {
            offset: self.data.len() as u64,
            len: bytes.len() as u64,
        });
        self.data.extend_from_slice(bytes);
        candidates.push(ix);
        ix
    }

    /// Serializes `model` into a [`StoredGraph`] (postcard bytes), interning its tensors.
    pub fn write_graph(&mut self, model: &TypedModel) -> TractResult<Vec<u8>> {
        let nnef = nnef();
        let proto = tract_nnef::ser::to_proto_model(&nnef, model)?;
        if proto.quantization.is_some() {
            bail!("graphs with NNEF quantization annotations are not supported yet");
        }
        let mut text = vec![];
        tract_nnef::ast::dump::Dumper::new(&nnef, &mut text).document(&proto.doc)?;
        let mut labels: Vec<&Identifier> = proto.tensors.keys().collect();
        labels.sort();
        let mut tensors = vec![];
        for label in labels {
            let mut bytes = vec![];
            tract_nnef::tensors::write_tensor(&mut bytes, &proto.tensors[label])?;
            tensors.push((label.0.clone(), self.intern(&bytes)));
        }
        let stored = StoredGraph {
            nnef: String::from_utf8(text)?,
            tensors,
        };
        postcard::to_allocvec(&stored).map_err(|e| anyhow!("encoding the graph: {e}"))
    }

    /// The tensor section's bytes and its table, for the manifest.
    pub fn finish(self) -> (Vec<u8>, Vec<TensorBlob>) {
        (self.data, self.blobs)
    }
}

/// Reads stored graphs of one file, loading each stored tensor once however many graphs use it.
pub struct GraphReader<'a> {
    section: &'a [u8],
    table: &'a [TensorBlob],
    loaded: Vec<Option<Arc<Tensor>>>,
    release: Option<&'a Release<'a>>,
}

/// What [`GraphReader::with_release`] calls with the stored bytes of each tensor it has copied.
pub type Release<'a> = dyn Fn(&[u8]) + 'a;

impl<'a> GraphReader<'a> {
    /// A reader over the file's `Tensors` section and the manifest's tensor table.
    pub fn new(section: &'a [u8], table: &'a [TensorBlob]) -> GraphReader<'a> {
        GraphReader {
            section,
            table,
            loaded: vec![None; table.len()],
            release: None,
        }
    }

    /// Calls `release` with each stored tensor's bytes once they are copied into the tensor the
    /// graphs use: a memory-mapped file can give those pages back
    /// ([`Model::load`](crate::Model::load) does), so the file and its copy are not both resident.
    pub fn with_release(mut self, release: &'a Release<'a>) -> GraphReader<'a> {
        self.release = Some(release);
        self
    }

    fn tensor(&mut self, ix: u32) -> TractResult<Arc<Tensor>> {
        let slot = self
            .loaded
            .get_mut(ix as usize)
            .with_context(|| format!("tensor {ix} is not in the table"))?;
        if let Some(t) = slot {
            return Ok(t.clone());
        }
        let b = &self.table[ix as usize];
        let end = b
            .offset
            .checked_add(b.len)
            .filter(|&e| e <= self.section.len() as u64);
        let end = end.with_context(|| format!("tensor {ix} lies outside the tensor section"))?;
        let stored = &self.section[b.offset as usize..end as usize];
        let t = Arc::new(tract_nnef::tensors::read_tensor(stored)?);
        if let Some(release) = self.release {
            release(stored);
        }
        *slot = Some(t.clone());
        Ok(t)
    }

    /// Reads a stored graph into a typed model.
    pub fn read_graph(&mut self, bytes: &[u8]) -> TractResult<TypedModel> {
        let stored: StoredGraph =
            postcard::from_bytes(bytes).map_err(|e| anyhow!("decoding the graph: {e}"))?;
        let doc = tract_nnef::ast::parse::parse_document(&stored.nnef)?;
        let mut tensors = HashMap::new();
        for (label, ix) in &stored.tensors {
            tensors.insert(Identifier(label.clone()), self.tensor(*ix)?);
        }
        let proto = ProtoModel {
            doc,
            tensors,
            quantization: None,
            resources: HashMap::new(),
        };
        nnef().model_for_proto_model(&proto)
    }
}
