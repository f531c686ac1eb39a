//! Reading predictions off the model: probabilities and top-k at a position.

use burn::tensor::{backend::Backend, Tensor};
use serde::{Deserialize, Serialize};

use crate::{KnError, KnowledgeModel, ModelInput};

/// One predicted token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    /// Token id.
    pub id: u32,
    /// Probability (softmax over the vocabulary).
    pub prob: f32,
}

/// Softmax probabilities at `pos` for every sequence of `input`.
///
/// # Shapes
/// - output: `[batch, vocab]`
pub fn probs_at<B: Backend, M: KnowledgeModel<B>>(
    model: &M,
    input: &ModelInput<B>,
    pos: usize,
) -> Result<Tensor<B, 2>, KnError> {
    let [b, s] = input.dims();
    if pos >= s {
        return Err(KnError::PositionOutOfRange { pos, seq_len: s });
    }
    let resid = crate::model::run_layers(model, model.embed(input), input, 0, &mut crate::NoHook);
    let d = model.dims().d_model;
    let logits = model.logits(resid.slice([0..b, pos..pos + 1, 0..d]));
    let v = model.dims().vocab_size;
    Ok(log_softmax(logits.reshape([b, v])).exp())
}

/// Columns summed at once by [`log_softmax`]'s normaliser.
const SUM_BLOCK: usize = 1024;

/// `log softmax` over the last axis, with the normaliser `Σ exp(x - max)` summed in blocks of
/// [`SUM_BLOCK`] columns and then over the blocks.
///
/// burn's `log_softmax` sums the whole row in one pass, which on burn-ndarray accumulates in
/// order in f32: over a 49,152-token vocabulary (SmolLM2) that alone moves probabilities by
/// 1.4e-4 relative to transformers. Blocked, the rounding grows with the block and block
/// count instead of the vocabulary (measured: 1e-5 on SmolLM2). The max is detached: the
/// result does not depend on the shift, so neither does its gradient.
///
/// # Shapes
/// - `x` and output: `[.., vocab]`
pub fn log_softmax<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    let last = D - 1;
    let v = x.dims()[last];
    let shifted = x.clone() - x.detach().max_dim(last);
    let e = shifted.clone().exp();
    let sum = if v <= SUM_BLOCK {
        e.sum_dim(last)
    } else {
        let parts = (0..v).step_by(SUM_BLOCK).map(|s| e.clone().narrow(last, s, SUM_BLOCK.min(v - s)).sum_dim(last));
        Tensor::cat(parts.collect(), last).sum_dim(last)
    };
    shifted - sum.log()
}

/// The `k` most probable tokens at `pos` of a one-sequence input, most probable first.
pub fn top_k<B: Backend, M: KnowledgeModel<B>>(
    model: &M,
    input: &ModelInput<B>,
    pos: usize,
    k: usize,
) -> Result<Vec<Prediction>, KnError> {
    let probs = probs_at(model, input, pos)?;
    let row = to_vec(probs.narrow(0, 0, 1))?;
    Ok(top_k_of(&row, k))
}

/// The `k` largest entries of `probs` as predictions, largest first (ties: lower id first).
pub fn top_k_of(probs: &[f32], k: usize) -> Vec<Prediction> {
    let mut idx: Vec<usize> = (0..probs.len()).collect();
    idx.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]).then(a.cmp(&b)));
    idx.into_iter().take(k).map(|i| Prediction { id: i as u32, prob: probs[i] }).collect()
}

/// Reads a float tensor back to the host.
pub fn to_vec<B: Backend, const D: usize>(t: Tensor<B, D>) -> Result<Vec<f32>, KnError> {
    t.into_data().convert::<f32>().into_vec::<f32>().map_err(|e| KnError::Backend(format!("{e:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_orders_by_probability() {
        let p = top_k_of(&[0.1, 0.5, 0.2, 0.2], 3);
        assert_eq!(p.iter().map(|x| x.id).collect::<Vec<_>>(), vec![1, 2, 3]);
    }
}
