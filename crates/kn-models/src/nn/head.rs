//! Final norm and language-model head.

use super::DualMatmul;
use burn::tensor::Tensor;

use super::{Activation, Linear, Norm};

/// BERT's MLM transform (`cls.predictions.transform`): dense, activation, norm.
#[derive(Debug, Clone)]
pub struct HeadTransform<B: DualMatmul> {
    /// Dense `[d_model, d_model]`.
    pub dense: Linear<B>,
    /// Activation.
    pub act: Activation,
    /// Norm.
    pub norm: Norm<B>,
}

/// `logits = T(LN_f(h)) · W_U + b`.
#[derive(Debug, Clone)]
pub struct LmHead<B: DualMatmul> {
    /// Final norm of pre-LN models (GPT `ln_f`, Llama `model.norm`).
    pub final_norm: Option<Norm<B>>,
    /// MLM transform (BERT).
    pub transform: Option<HeadTransform<B>>,
    /// Unembedding, `[d_model, vocab]` (the transposed, usually tied, token embedding).
    pub unembed: Linear<B>,
    /// Output bias, `[vocab]` (BERT).
    pub bias: Option<Tensor<B, 1>>,
}

impl<B: DualMatmul> LmHead<B> {
    /// Logits for every given row.
    ///
    /// # Shapes
    /// - `h`: `[batch, rows, d_model]`; output: `[batch, rows, vocab]`
    pub fn forward(&self, mut h: Tensor<B, 3>) -> Tensor<B, 3> {
        if let Some(n) = &self.final_norm {
            h = n.forward(h);
        }
        if let Some(t) = &self.transform {
            h = t.norm.forward(t.act.forward(t.dense.forward(h)));
        }
        let logits = self.unembed.forward(h);
        match &self.bias {
            Some(b) => logits + b.clone().unsqueeze::<3>(),
            None => logits,
        }
    }
}
