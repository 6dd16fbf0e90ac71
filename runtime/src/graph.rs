//! The tract side: the NNEF dialect model graphs are stored in, and loading them into a plan.
//!
//! Stored graphs use tract's core operators, tract's ONNX extensions, and one registry of our own,
//! `bertling`, for the operators tract's decluttering produces but tract 0.23's NNEF cannot write
//! (today: the exact, erf-based GELU that every BERT-family export contains).

use tract_core::ops::nn::GeluExact;
use tract_nnef::framework::Nnef;
use tract_nnef::internal::*;
use tract_onnx_opl::WithOnnx;

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
    reg
}

/// Reads a stored graph (an NNEF tar image) into a typed model.
pub fn read_graph(tar: &[u8]) -> TractResult<TypedModel> {
    let mut reader = tar;
    nnef().model_for_read(&mut reader)
}

/// Writes a typed model as an NNEF tar image, deterministically (fixed timestamps).
pub fn write_graph(model: &TypedModel) -> TractResult<Vec<u8>> {
    nnef().write_to_tar_with_config(model, Vec::new(), false, true)
}
