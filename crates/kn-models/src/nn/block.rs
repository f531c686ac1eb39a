//! One transformer block, with norm placement as data (no boolean that swaps field meanings).

use super::DualMatmul;
use burn::tensor::Tensor;

use kn_core::{gather_rows, ModelInput};

use super::{Activation, Attention, LayerNorm, Linear};

/// Where the block's layer norms sit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum NormPlacement {
    /// `x = LN(x + f(x))` (BERT).
    Post,
    /// `x = x + f(LN(x))` (GPT-2, GPT-Neo).
    Pre,
}

/// Attention + FFN, split at the FFN post-activation (the knowledge-neuron site).
#[derive(Debug, Clone)]
pub struct Block<B: DualMatmul> {
    /// Norm placement.
    pub norm: NormPlacement,
    /// The norm of the attention sub-layer (before it for Pre, after the residual for Post).
    pub ln_attn: LayerNorm<B>,
    /// The norm of the FFN sub-layer.
    pub ln_ffn: LayerNorm<B>,
    /// Self-attention.
    pub attn: Attention<B>,
    /// FFN input projection, `[d_model, d_ff]`.
    pub ffn_in: Linear<B>,
    /// FFN activation.
    pub act: Activation,
    /// FFN output projection, `[d_ff, d_model]`: row `i` is neuron `i`'s value vector.
    pub ffn_out: Linear<B>,
}

impl<B: DualMatmul> Block<B> {
    /// Residual stream after the attention sub-layer.
    ///
    /// # Shapes
    /// - `x` and output: `[batch, seq, d_model]`
    pub fn attention_half(&self, x: Tensor<B, 3>, input: &ModelInput<B>) -> Tensor<B, 3> {
        match self.norm {
            NormPlacement::Post => self.ln_attn.forward(x.clone() + self.attn.forward(x, input)),
            NormPlacement::Pre => x.clone() + self.attn.forward(self.ln_attn.forward(x), input),
        }
    }

    /// [`Block::attention_half`] at the positions `rows` only.
    ///
    /// # Shapes
    /// - `x`: `[batch, seq, d_model]`; output: `[batch, rows.len(), d_model]`
    pub fn attention_half_rows(&self, x: Tensor<B, 3>, rows: &[usize], input: &ModelInput<B>) -> Tensor<B, 3> {
        match self.norm {
            NormPlacement::Post => {
                let a = self.attn.forward_rows(x.clone(), rows, input);
                self.ln_attn.forward(gather_rows(x, rows) + a)
            }
            NormPlacement::Pre => {
                let a = self.attn.forward_rows(self.ln_attn.forward(x.clone()), rows, input);
                gather_rows(x, rows) + a
            }
        }
    }

    /// [`Block::attention_half`] for the last positions only, the earlier ones given as
    /// `prefix` (causal attention only; `None` otherwise).
    ///
    /// # Shapes
    /// - `suffix`: `[batch, n, d_model]`, `prefix`: `[1, p, d_model]`; output: `[batch, n, d_model]`
    pub fn attention_half_suffix(
        &self,
        suffix: Tensor<B, 3>,
        prefix: Tensor<B, 3>,
        input: &ModelInput<B>,
    ) -> Option<Tensor<B, 3>> {
        match self.norm {
            NormPlacement::Post => {
                let a = self.attn.forward_suffix(suffix.clone(), prefix, input)?;
                Some(self.ln_attn.forward(suffix + a))
            }
            NormPlacement::Pre => {
                let a = self.attn.forward_suffix(
                    self.ln_attn.forward(suffix.clone()),
                    self.ln_attn.forward(prefix),
                    input,
                )?;
                Some(suffix + a)
            }
        }
    }

    /// FFN post-activation.
    ///
    /// # Shapes
    /// - `mid`: `[batch, seq, d_model]`; output: `[batch, seq, d_ff]`
    pub fn ffn_activation(&self, mid: Tensor<B, 3>) -> Tensor<B, 3> {
        let h = match self.norm {
            NormPlacement::Post => mid,
            NormPlacement::Pre => self.ln_ffn.forward(mid),
        };
        self.act.forward(self.ffn_in.forward(h))
    }

    /// Residual stream after the FFN, from its (possibly patched) activations.
    ///
    /// # Shapes
    /// - `mid`: `[batch, seq, d_model]`, `act`: `[batch, seq, d_ff]`; output: `[batch, seq, d_model]`
    pub fn ffn_output(&self, mid: Tensor<B, 3>, act: Tensor<B, 3>) -> Tensor<B, 3> {
        let out = self.ffn_out.forward(act);
        match self.norm {
            NormPlacement::Post => self.ln_ffn.forward(mid + out),
            NormPlacement::Pre => mid + out,
        }
    }
}
