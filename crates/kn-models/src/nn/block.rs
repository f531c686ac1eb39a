//! One transformer block, with norm placement as data (no boolean that swaps field meanings).

use super::DualMatmul;
use burn::tensor::Tensor;

use kn_core::{gather_rows, ModelInput};

use super::{Activation, Attention, Linear, Norm};

/// Where the block's layer norms sit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum NormPlacement {
    /// `x = LN(x + f(x))` (BERT).
    Post,
    /// `x = x + f(LN(x))` (GPT-2, GPT-Neo, the Llama family).
    Pre,
}

/// Attention + FFN, split at the FFN post-activation (the knowledge-neuron site).
///
/// The FFN is `out(act(in(x)))`, or with a gate (SwiGLU, the Llama family)
/// `out(act(gate(x)) ⊙ in(x))`: either way the neurons are the input of `out`, TransformerLens'
/// `blocks.{l}.mlp.hook_post`.
#[derive(Debug, Clone)]
pub struct Block<B: DualMatmul> {
    /// Norm placement.
    pub norm: NormPlacement,
    /// The norm of the attention sub-layer (before it for Pre, after the residual for Post).
    pub ln_attn: Norm<B>,
    /// The norm of the FFN sub-layer.
    pub ln_ffn: Norm<B>,
    /// Self-attention.
    pub attn: Attention<B>,
    /// FFN input projection, `[d_model, d_ff]` (the up projection of a gated FFN).
    pub ffn_in: Linear<B>,
    /// FFN gate projection, `[d_model, d_ff]`, whose activation multiplies `ffn_in`'s output
    /// (`mlp.gate_proj`); `None` for a plain FFN.
    pub ffn_gate: Option<Linear<B>>,
    /// FFN activation (of the gate, when there is one).
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

    /// [`Block::attention_half`] of `x`, which differs from `base` (batch 1 or `P`) at the
    /// positions `rows` only: the other rows' queries, keys and values are `base`'s (see
    /// [`Attention::forward_changed`]). With `only_rows`, the output at `rows` only.
    ///
    /// # Shapes
    /// - `x`: `[batch, seq, d_model]`, `base`: `[1 or P, seq, d_model]`; output:
    ///   `[batch, seq or rows.len(), d_model]`
    pub fn attention_half_changed(
        &self,
        x: Tensor<B, 3>,
        base: Tensor<B, 3>,
        rows: &[usize],
        only_rows: bool,
        input: &ModelInput<B>,
    ) -> Tensor<B, 3> {
        let changed = gather_rows(x.clone(), rows);
        let residual = if only_rows { changed.clone() } else { x };
        match self.norm {
            NormPlacement::Post => {
                let a = self.attn.forward_changed(base, changed, rows, only_rows, input);
                self.ln_attn.forward(residual + a)
            }
            NormPlacement::Pre => {
                let (base, changed) = (self.ln_attn.forward(base), self.ln_attn.forward(changed));
                residual + self.attn.forward_changed(base, changed, rows, only_rows, input)
            }
        }
    }

    /// [`Block::attention_half`] for the last positions only, the earlier ones given as
    /// `prefix` (causal attention only; `None` otherwise); see [`Attention::forward_suffix`].
    ///
    /// # Shapes
    /// - `suffix`: `[batch, n, d_model]`, `prefix`: `[1 or P, p, d_model]`; output: `[batch, n, d_model]`
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

    /// FFN post-activation: `act(in(h))`, or `act(gate(h)) ⊙ in(h)` with a gate.
    ///
    /// # Shapes
    /// - `mid`: `[batch, seq, d_model]`; output: `[batch, seq, d_ff]`
    pub fn ffn_activation(&self, mid: Tensor<B, 3>) -> Tensor<B, 3> {
        let h = match self.norm {
            NormPlacement::Post => mid,
            NormPlacement::Pre => self.ln_ffn.forward(mid),
        };
        match &self.ffn_gate {
            Some(gate) => self.act.forward(gate.forward(h.clone())) * self.ffn_in.forward(h),
            None => self.act.forward(self.ffn_in.forward(h)),
        }
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
