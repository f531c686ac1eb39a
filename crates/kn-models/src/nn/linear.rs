//! Affine map with the weight stored `[in, out]` (burn's layout).

use std::sync::OnceLock;

use burn::tensor::{Tensor, TensorPrimitive};

use super::DualMatmul;
use crate::weights::RawTensor;

/// `y = x W + b` with `W: [d_in, d_out]`.
///
/// Loaders transpose PyTorch `nn.Linear` weights (`[out, in]`) once at load time; GPT-2's
/// `Conv1D` is already `[in, out]`. On backends that want it ([`DualMatmul::KEEP_TRANSPOSE`])
/// `Wᵀ` is kept too, for the backward pass: built on the first product whose input gradient is
/// needed, so that loading and the forward-only commands (predict, interventions) never pay for
/// it in time or memory.
#[derive(Debug, Clone)]
pub struct Linear<B: DualMatmul> {
    /// Weight, `[d_in, d_out]`.
    weight: Tensor<B, 2>,
    /// `Wᵀ`, `[d_out, d_in]`, contiguous, once a backward pass needed it (backends that keep it).
    weight_t: OnceLock<Tensor<B, 2>>,
    /// Bias, `[d_out]`.
    pub bias: Option<Tensor<B, 1>>,
}

impl<B: DualMatmul> Linear<B> {
    /// From a host weight `[d_in, d_out]`.
    pub fn from_raw(w: RawTensor, bias: Option<Tensor<B, 1>>, device: &B::Device) -> Self {
        Self::new(w.into_tensor(device), bias)
    }

    /// From a weight `[d_in, d_out]` already on the device.
    pub fn new(weight: Tensor<B, 2>, bias: Option<Tensor<B, 1>>) -> Self {
        Self { weight, weight_t: OnceLock::new(), bias }
    }

    /// The same map with `wt` (`[d_out, d_in]`, equal to `Wᵀ`) as its transpose, on backends
    /// that keep one: a tied head shares the token-embedding table instead of copying it.
    pub fn with_transpose(self, wt: Tensor<B, 2>) -> Self {
        if B::KEEP_TRANSPOSE {
            let _ = self.weight_t.set(wt);
        }
        self
    }

    /// Whether `Wᵀ` has been built (by a product whose input gradient was needed).
    pub fn has_transpose(&self) -> bool {
        self.weight_t.get().is_some()
    }

    /// Builds `Wᵀ` now, on backends that keep it.
    pub fn prepare_transpose(&self) {
        if B::KEEP_TRANSPOSE {
            self.weight_t.get_or_init(|| contiguous_transpose(&self.weight));
        }
    }

    /// The weight, `[d_in, d_out]`.
    pub fn weight(&self) -> Tensor<B, 2> {
        self.weight.clone()
    }

    /// Replaces the weight (same shape), keeping `Wᵀ` in step.
    pub fn set_weight(&mut self, weight: Tensor<B, 2>) {
        self.weight_t = OnceLock::new();
        self.weight = weight;
    }

    /// Applies the map to every row.
    ///
    /// # Shapes
    /// - `x`: `[batch, seq, d_in]`; output: `[batch, seq, d_out]`
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let w = self.weight.clone().into_primitive().tensor();
        let x = x.into_primitive().tensor();
        let y = if B::KEEP_TRANSPOSE {
            let wt =
                || self.weight_t.get_or_init(|| contiguous_transpose(&self.weight)).clone().into_primitive().tensor();
            B::dual_matmul(x, w, wt)
        } else {
            B::rows_matmul(x, w)
        };
        let y = Tensor::<B, 3>::from_primitive(TensorPrimitive::Float(y));
        match &self.bias {
            Some(bias) => y + bias.clone().unsqueeze::<3>(),
            None => y,
        }
    }
}

/// `wᵀ` materialised (row-major), not a strided view.
fn contiguous_transpose<B: DualMatmul>(w: &Tensor<B, 2>) -> Tensor<B, 2> {
    if let Some(t) = B::transpose_2d(&w.clone().into_primitive().tensor()) {
        return Tensor::from_primitive(TensorPrimitive::Float(t));
    }
    let shape = w.dims().to_vec();
    let data = w.clone().into_data().iter::<f32>().collect();
    RawTensor { shape, data }.transpose().into_tensor(&w.device())
}
