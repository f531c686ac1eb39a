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
    let device = x.device();
    let shifted = x.clone() - x.detach().max_dim(last);
    let e = shifted.clone().exp();
    let sum = if v <= SUM_BLOCK {
        e.sum_dim(last)
    } else {
        // Zero-padded to whole blocks and viewed as `[rows, blocks, SUM_BLOCK]`: one sum per
        // block, then over the blocks. (Slicing the row into blocks instead costs a zero-filled
        // copy of the whole tensor per block in the backward pass.)
        let dims = e.dims();
        let blocks = v.div_ceil(SUM_BLOCK);
        let rows = dims[..last].iter().product::<usize>();
        let padded = match blocks * SUM_BLOCK - v {
            0 => e,
            pad => {
                let mut zeros = dims;
                zeros[last] = pad;
                Tensor::cat(vec![e, Tensor::zeros(zeros, &device)], last)
            }
        };
        let mut out = dims;
        out[last] = 1;
        padded.reshape([rows, blocks, SUM_BLOCK]).sum_dim(2).sum_dim(1).reshape(out)
    };
    shifted - sum.log()
}

/// `logp[b, j, ids[b · rows + j]]`: one log-probability per row, gathered along the
/// vocabulary (differentiable).
///
/// # Shapes
/// - `logp`: `[batch, rows, vocab]`, `ids`: `batch · rows` entries; output: `[batch, rows]`
pub fn gather_tokens<B: Backend>(logp: Tensor<B, 3>, ids: &[u32]) -> Tensor<B, 2> {
    let [k, n, _] = logp.dims();
    let idx: Vec<i64> = ids.iter().map(|&t| i64::from(t)).collect();
    let idx =
        Tensor::<B, 3, burn::tensor::Int>::from_data(burn::tensor::TensorData::new(idx, [k, n, 1]), &logp.device());
    logp.gather(2, idx).squeeze_dim(2)
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
    fn blocked_log_softmax_and_its_gradient_match_f64() {
        use burn::backend::{Autodiff, NdArray};
        use burn::tensor::TensorData;
        type B = Autodiff<NdArray<f32>>;
        // Three rows over a vocabulary that is not a whole number of blocks.
        let (rows, v) = (3, 2 * SUM_BLOCK + 517);
        let vals: Vec<f32> = (0..rows * v).map(|i| (i as f32 * 0.731).sin() * 7.0).collect();
        let x = Tensor::<B, 2>::from_data(TensorData::new(vals.clone(), [rows, v]), &Default::default()).require_grad();
        let target = 1234;
        let logp = log_softmax(x.clone());
        let grads = logp.clone().slice([0..rows, target..target + 1]).sum().backward();
        let got = logp.into_data().to_vec::<f32>().unwrap();
        let grad = x.grad(&grads).unwrap().into_data().to_vec::<f32>().unwrap();
        let (mut worst, mut worst_grad) = (0.0f64, 0.0f64);
        for r in 0..rows {
            let row = &vals[r * v..(r + 1) * v];
            let max = row.iter().fold(f64::MIN, |m, &y| m.max(y as f64));
            let lse = max + row.iter().map(|&y| (y as f64 - max).exp()).sum::<f64>().ln();
            for (j, &y) in row.iter().enumerate() {
                worst = worst.max((got[r * v + j] as f64 - (y as f64 - lse)).abs());
                // d log p_t / d x_j = [j = t] - softmax_j
                let want = f64::from(u8::from(j == target)) - (y as f64 - lse).exp();
                worst_grad = worst_grad.max((grad[r * v + j] as f64 - want).abs());
            }
        }
        println!("blocked log_softmax vs f64: values {worst:.1e}, gradient {worst_grad:.1e}");
        assert!(worst < 1e-5, "{worst}");
        assert!(worst_grad < 1e-6, "{worst_grad}");
    }

    #[test]
    fn top_k_orders_by_probability() {
        let p = top_k_of(&[0.1, 0.5, 0.2, 0.2], 3);
        assert_eq!(p.iter().map(|x| x.id).collect::<Vec<_>>(), vec![1, 2, 3]);
    }
}
