//! Layer normalisation.

use burn::tensor::{backend::Backend, Tensor};

/// LayerNorm over the last axis, with the biased variance (as PyTorch).
#[derive(Debug, Clone)]
pub struct LayerNorm<B: Backend> {
    /// Scale, `[d]`.
    pub gamma: Tensor<B, 1>,
    /// Shift, `[d]`.
    pub beta: Tensor<B, 1>,
    /// Added to the variance.
    pub eps: f64,
}

impl<B: Backend> LayerNorm<B> {
    /// Normalises every row.
    ///
    /// # Shapes
    /// - `x` and output: `[batch, seq, d]`
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let (var, mean) = x.clone().var_mean_bias(2);
        let x = (x - mean) / (var + self.eps).sqrt();
        x * self.gamma.clone().unsqueeze::<3>() + self.beta.clone().unsqueeze::<3>()
    }
}
