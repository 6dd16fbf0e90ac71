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
use std::hash::{DefaultHasher, Hash, Hasher};

use tract_core::internal::*;
use tract_core::ops::konst::Const;

/// The distinct constants met so far, by a hash of their contents.
#[derive(Default)]
pub(crate) struct ConstantPool {
    by_hash: HashMap<u64, Vec<Arc<Tensor>>>,
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
            let mut h = DefaultHasher::new();
            tensor.datum_type().hash(&mut h);
            tensor.shape().hash(&mut h);
            bytes.hash(&mut h);
            let same = self.by_hash.entry(h.finish()).or_default();
            let found = same.iter().find(|t| {
                t.datum_type() == tensor.datum_type()
                    && t.shape() == tensor.shape()
                    && t.as_bytes() == bytes
            });
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
        Ok(saved)
    }
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
}
