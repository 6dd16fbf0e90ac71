//! One copy of each distinct constant across a model's plans.
//!
//! The file stores a tensor once however many nodes read it (ALBERT's one layer read by twelve),
//! and the loader shares it. What the loader derives from it per node is another matter: each
//! `Int8Linear` computes its weights' column sums and converts its f16 scales to f32 at load
//! ([`crate::int8`]), so ALBERT-base held twelve equal copies of each: 10 MB of its 22 MB of
//! constants. Such an operator reads an equal constant already in the graph ([`find_equal`])
//! instead of adding its own; and after optimizing, [`ConstantPool::share`] replaces every constant
//! equal to one met before (same type, shape and bytes) by that one, within a plan and across the
//! encoder's and the head's.

use std::collections::HashMap;

use tract_core::internal::*;
use tract_core::ops::konst::Const;
use tract_core::ops::matmul::optimized::{MatMulOperand, OptMatMul, ProtoFusedSpec};
use tract_linalg::mmm::{EagerPackedInput, MMMInputValue};
use tract_linalg::pack::PackedFormat;

/// The distinct constants met so far, by type and shape. Candidates are compared byte for byte
/// (different weights differ in their first bytes: no need to hash every byte of a model at load).
#[derive(Default)]
pub(crate) struct ConstantPool {
    by_shape: HashMap<(DatumType, TVec<usize>), Vec<Arc<Tensor>>>,
    /// Weights tract packed into its f32 matrix products, by sizes.
    packed: HashMap<(usize, usize, usize, usize), Vec<EagerPackedInput>>,
}

impl ConstantPool {
    /// Points every plain numeric constant of `model` that equals one already in the pool at
    /// that one (adding the others to the pool); returns the bytes no longer held twice.
    pub(crate) fn share(&mut self, model: &mut TypedModel) -> TractResult<usize> {
        let mut saved = 0;
        for id in 0..model.nodes.len() {
            let Some(k) = model.node(id).op_as::<Const>() else {
                continue;
            };
            if k.exotic_fact().is_some() {
                continue;
            }
            let tensor = k.val().clone();
            if !tensor.is_plain_ram() || !tensor.datum_type().is_copy() {
                continue;
            }
            let bytes = tensor.as_bytes();
            let key = (tensor.datum_type(), tensor.shape().into());
            let same = self.by_shape.entry(key).or_default();
            let found = same.iter().find(|t| t.as_bytes() == bytes);
            match found {
                Some(first) if Arc::ptr_eq(first, &tensor) => {}
                Some(first) => {
                    let first = first.clone();
                    saved += bytes.len();
                    let node = model.node_mut(id);
                    node.op = Box::new(Const::new(first.clone())?);
                    node.outputs[0].fact.konst = Some(first);
                }
                None => same.push(tensor),
            }
        }
        Ok(saved + self.share_packed(model))
    }

    /// The weights tract packs into an f32 product (`OptMatMul`) live inside the operator, one
    /// packing per product: ALBERT's twelve layers packed the one stored layer twelve times.
    /// Equal packings (same format, sizes and bytes) now share the first one's bytes.
    fn share_packed(&mut self, model: &mut TypedModel) -> usize {
        let mut saved = 0;
        for node in model.nodes.iter_mut() {
            for value in packed_weights_mut(node) {
                let replacement = {
                    let Some(eager) = value.downcast_ref::<EagerPackedInput>() else {
                        continue;
                    };
                    let Some(data) = packed_data(eager) else {
                        continue;
                    };
                    let key = (
                        eager.mn,
                        eager.fact.k,
                        eager.panel_bytes,
                        eager.packed.len(),
                    );
                    let same = self.packed.entry(key).or_default();
                    // Sizes are the key: the format and the values remain.
                    let equal = |p: &&EagerPackedInput| {
                        p.fact == eager.fact && packed_data(p).is_some_and(|d| d.eq(data.clone()))
                    };
                    match same.iter().find(equal) {
                        Some(first) if Arc::ptr_eq(&first.packed, &eager.packed) => None,
                        Some(first) => {
                            saved += eager.packed.len();
                            Some(first.clone())
                        }
                        None => {
                            same.push(eager.clone());
                            None
                        }
                    }
                };
                if let Some(first) = replacement {
                    *value = Box::new(first);
                }
            }
        }
        saved
    }
}

/// The weights tract packed into `node` when it optimized it into an f32 product (`OptMatMul`):
/// its constant operands. None for other nodes.
pub(crate) fn packed_weights(node: &TypedNode) -> impl Iterator<Item = &dyn MMMInputValue> {
    node.op_as::<OptMatMul>()
        .into_iter()
        .flat_map(|mm| &mm.micro_ops)
        .filter_map(|spec| match spec {
            ProtoFusedSpec::AddMatMul { a, b, .. } => Some([a, b]),
            _ => None,
        })
        .flatten()
        .filter_map(|operand| match operand {
            MatMulOperand::Const(value) => Some(&**value),
            MatMulOperand::Input(_) => None,
        })
}

/// [`packed_weights`], to replace them.
fn packed_weights_mut(node: &mut TypedNode) -> impl Iterator<Item = &mut Box<dyn MMMInputValue>> {
    node.op_as_mut::<OptMatMul>()
        .into_iter()
        .flat_map(|mm| &mut mm.micro_ops)
        .filter_map(|spec| match spec {
            ProtoFusedSpec::AddMatMul { a, b, .. } => Some([a, b]),
            _ => None,
        })
        .flatten()
        .filter_map(|operand| match operand {
            MatMulOperand::Const(value) => Some(value),
            MatMulOperand::Input(_) => None,
        })
}

/// The values of a packed f32/f16 matrix, panel by panel, without the padding at each panel's
/// end (tract leaves it uninitialized, so two packings of one matrix differ there).
fn packed_data(p: &EagerPackedInput) -> Option<impl Iterator<Item = &[u8]> + Clone> {
    let format = p.fact.format.downcast_ref::<PackedFormat>()?;
    let used = p.fact.k * format.r * format.dt.size_of();
    if p.panel_bytes < used || p.panel_bytes == 0 || !p.packed.len().is_multiple_of(p.panel_bytes) {
        return None;
    }
    Some(
        p.packed
            .chunks(p.panel_bytes)
            .map(move |panel| &panel[..used]),
    )
}

/// A constant node of `model` holding a tensor equal to `t` (same type, shape and bytes): what
/// an operator deriving a constant at load can read instead of adding its own copy.
pub(crate) fn find_equal(model: &TypedModel, t: &Tensor) -> Option<OutletId> {
    if !t.is_plain_ram() || !t.datum_type().is_copy() {
        return None;
    }
    model.nodes().iter().find_map(|node| {
        let k = node.op_as::<Const>()?.val();
        let equal = k.datum_type() == t.datum_type()
            && k.shape() == t.shape()
            && k.is_plain_ram()
            && k.as_bytes() == t.as_bytes();
        equal.then(|| OutletId::new(node.id, 0))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn consts(model: &TypedModel) -> Vec<Arc<Tensor>> {
        model
            .nodes()
            .iter()
            .filter_map(|n| n.op_as::<Const>().map(|k| k.val().clone()))
            .collect()
    }

    /// A constant node of its own, as an operator's declutter patch adds one (tract's
    /// `add_const` would reuse an equal one already in the same graph).
    fn konst(model: &mut TypedModel, name: &str, t: Tensor) -> TractResult<OutletId> {
        let t = t.into_arc_tensor();
        let fact = TypedFact::try_from(t.clone())?;
        Ok(model.add_node(name, Const::new(t)?, tvec!(fact))?.into())
    }

    #[test]
    fn equal_constants_become_one_and_the_graph_computes_the_same() -> TractResult<()> {
        let mut model = TypedModel::default();
        let x = model.add_source("x", f32::fact([3]))?;
        let a = konst(&mut model, "a", tensor1(&[1f32, 2., 3.]))?;
        let b = konst(&mut model, "b", tensor1(&[1f32, 2., 3.]))?; // equal to a, another tensor
        let c = konst(&mut model, "c", tensor1(&[1f32, 2., 4.]))?; // differs in one value
        let d = konst(&mut model, "d", tensor1(&[1i32, 2, 3]))?; // other type
        let d = model.wire_node("cast", tract_core::ops::cast::cast(f32::datum_type()), &[d])?[0];
        let mut y = x;
        for (i, k) in [a, b, c, d].into_iter().enumerate() {
            y = model.wire_node(format!("add{i}"), tract_core::ops::math::add(), &[y, k])?[0];
        }
        model.select_output_outlets(&[y])?;
        let run = |m: &TypedModel| -> TractResult<Vec<f32>> {
            let out = m
                .clone()
                .into_runnable()?
                .run(tvec!(tensor1(&[0f32, 0., 0.]).into()))?;
            Ok(out[0].try_as_plain_ram()?.as_slice::<f32>()?.to_vec())
        };
        let before = run(&model)?;
        assert_eq!(before, vec![4., 8., 13.]);

        let mut pool = ConstantPool::default();
        assert_eq!(pool.share(&mut model)?, 12, "b's three f32");
        let k = consts(&model);
        assert_eq!(k.len(), 4);
        assert!(Arc::ptr_eq(&k[0], &k[1]), "a and b share one tensor");
        assert!(!Arc::ptr_eq(&k[0], &k[2]) && !Arc::ptr_eq(&k[1], &k[3]));
        let a_fact = model
            .outlet_fact(OutletId::new(b.node, 0))?
            .konst
            .clone()
            .unwrap();
        assert!(
            Arc::ptr_eq(&a_fact, &k[0]),
            "the fact's constant follows the op's"
        );
        assert_eq!(run(&model)?, before);

        // Across plans: a second graph's equal constant joins the first's.
        let mut other = TypedModel::default();
        let e = konst(&mut other, "e", tensor1(&[1f32, 2., 4.]))?;
        other.select_output_outlets(&[e])?;
        assert_eq!(pool.share(&mut other)?, 12);
        assert!(Arc::ptr_eq(&consts(&other)[0], &k[2]));
        Ok(())
    }

    /// The packed weights of each optimized f32 product, by address.
    fn packings(model: &TypedModel) -> Vec<usize> {
        model
            .nodes()
            .iter()
            .flat_map(packed_weights)
            .map(|v| {
                let eager = v.downcast_ref::<EagerPackedInput>().unwrap();
                Arc::as_ptr(&eager.packed) as *const u8 as usize
            })
            .collect()
    }

    #[test]
    fn equal_weights_packed_by_two_products_share_one_packing() -> TractResult<()> {
        // x·W1·W2·W3 with W1 = W3 (separate tensors, as ALBERT's lifted last layer and its
        // encoder layers are) and W2 different; k = 37 leaves padding at each panel's end.
        let (k, n) = (37, 37);
        let w = |seed: f32| {
            let v: Vec<f32> = (0..k * n).map(|i| (i as f32 * 0.37 + seed).sin()).collect();
            tensor1(&v).into_shape(&[k, n]).unwrap()
        };
        let mut model = TypedModel::default();
        let mut y = model.add_source("x", f32::fact([5, k]))?;
        for (i, seed) in [1f32, 2., 1.].into_iter().enumerate() {
            let wi = konst(&mut model, &format!("w{i}"), w(seed))?;
            let op = tract_core::ops::einsum::EinSum::new("mk,kn->mn".parse()?, f32::datum_type());
            y = model.wire_node(format!("mm{i}"), op, &[y, wi])?[0];
        }
        model.select_output_outlets(&[y])?;
        let mut model = model.into_optimized()?;
        let before = packings(&model);
        assert_eq!(before.len(), 3, "three packed products");
        assert!(
            before[0] != before[2],
            "tract packs each product's weights apart"
        );
        let x = Tensor::from_shape(
            &[5, k],
            &(0..5 * k).map(|i| i as f32 * 0.01).collect::<Vec<_>>(),
        )?;
        let run = |m: &TypedModel| -> TractResult<Tensor> {
            Ok(m.clone()
                .into_runnable()?
                .run(tvec!(x.clone().into()))?
                .remove(0)
                .into_tensor())
        };
        let want = run(&model)?;
        ConstantPool::default().share(&mut model)?;
        let after = packings(&model);
        assert_eq!(after[0], after[2], "W1 and W3 share one packing");
        assert_ne!(after[0], after[1], "W2 keeps its own");
        assert_eq!(run(&model)?, want);
        Ok(())
    }
}
