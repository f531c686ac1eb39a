//! Affine map with the weight stored `[in, out]` (burn's layout).

use burn::tensor::{backend::Backend, Tensor};

/// `y = x W + b` with `W: [d_in, d_out]`.
///
/// Loaders transpose PyTorch `nn.Linear` weights (`[out, in]`) once at load time; GPT-2's
/// `Conv1D` is already `[in, out]`.
#[derive(Debug, Clone)]
pub struct Linear<B: Backend> {
    /// Weight, `[d_in, d_out]`.
    pub weight: Tensor<B, 2>,
    /// Bias, `[d_out]`.
    pub bias: Option<Tensor<B, 1>>,
}

impl<B: Backend> Linear<B> {
    /// Applies the map to every row.
    ///
    /// # Shapes
    /// - `x`: `[batch, seq, d_in]`; output: `[batch, seq, d_out]`
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let [b, s, d_in] = x.dims();
        let d_out = self.weight.dims()[1];
        let y = x.reshape([b * s, d_in]).matmul(self.weight.clone());
        let y = match &self.bias {
            Some(bias) => y + bias.clone().unsqueeze::<2>(),
            None => y,
        };
        y.reshape([b, s, d_out])
    }
}
