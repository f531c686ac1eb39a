//! Multi-head self-attention, shared by all architectures.
//!
//! Ports `BertSelfAttention`+`BertSelfOutput`, `GPT2Attention` and `GPTNeoSelfAttention`:
//! <https://github.com/huggingface/transformers/blob/v4.46.0/src/transformers/models/bert/modeling_bert.py>,
//! <https://github.com/huggingface/transformers/blob/v4.46.0/src/transformers/models/gpt2/modeling_gpt2.py>,
//! <https://github.com/huggingface/transformers/blob/v4.46.0/src/transformers/models/gpt_neo/modeling_gpt_neo.py>.

use super::DualMatmul;
use burn::tensor::{activation::softmax, Tensor};

use kn_core::{gather_rows, ModelInput};

use super::{AttentionKind, Linear};

/// Self-attention with separate q/k/v/o projections (GPT-2's fused `c_attn` is split at load).
#[derive(Debug, Clone)]
pub struct Attention<B: DualMatmul> {
    /// Query projection.
    pub q: Linear<B>,
    /// Key projection.
    pub k: Linear<B>,
    /// Value projection.
    pub v: Linear<B>,
    /// Output projection.
    pub o: Linear<B>,
    /// Number of heads.
    pub n_heads: usize,
    /// Factor applied to `q·k` (`1/sqrt(d_head)`, or 1 for GPT-Neo).
    pub scale: f64,
    /// Which keys each query sees.
    pub kind: AttentionKind,
}

impl<B: DualMatmul> Attention<B> {
    /// Attention over the whole sequence.
    ///
    /// # Shapes
    /// - `x`: `[batch, seq, d_model]`; output: `[batch, seq, d_model]`
    pub fn forward(&self, x: Tensor<B, 3>, input: &ModelInput<B>) -> Tensor<B, 3> {
        let s = x.dims()[1];
        let bias = self.kind.bias(input, s, s, 0, &x.device());
        self.attend(x.clone(), x, bias)
    }

    /// Attention output at the positions `rows` only; keys and values from every position.
    ///
    /// # Shapes
    /// - `x`: `[batch, seq, d_model]`; output: `[batch, rows.len(), d_model]`
    pub fn forward_rows(&self, x: Tensor<B, 3>, rows: &[usize], input: &ModelInput<B>) -> Tensor<B, 3> {
        let s = x.dims()[1];
        let bias = self.kind.bias(input, s, s, 0, &x.device()).map(|bias| {
            let [bb, one, _, _] = bias.dims();
            Tensor::cat(rows.iter().map(|&r| bias.clone().slice([0..bb, 0..one, r..r + 1, 0..s])).collect(), 2)
        });
        self.attend(gather_rows(x.clone(), rows), x, bias)
    }

    /// Queries from `queries`, keys and values from `x`, scores shifted by `bias`.
    ///
    /// # Shapes
    /// - `queries`: `[batch, n, d_model]`, `x`: `[batch, seq, d_model]`,
    ///   `bias`: `[batch_or_1, 1, n, seq]`; output: `[batch, n, d_model]`
    fn attend(&self, queries: Tensor<B, 3>, x: Tensor<B, 3>, bias: Option<Tensor<B, 4>>) -> Tensor<B, 3> {
        let [b, n, d] = queries.dims();
        let q = self.heads(self.q.forward(queries));
        let k = self.heads(self.k.forward(x.clone()));
        let v = self.heads(self.v.forward(x));
        let mut scores = q.matmul(k.swap_dims(2, 3));
        if self.scale != 1.0 {
            scores = scores * self.scale;
        }
        if let Some(bias) = bias {
            scores = scores + bias;
        }
        let ctx = softmax(scores, 3).matmul(v);
        self.o.forward(ctx.swap_dims(1, 2).reshape([b, n, d]))
    }

    /// Attention output of the last `n` positions, the keys and values of the earlier `p`
    /// positions computed from `prefix` (batch 1, broadcast over the batch). Only for causal
    /// kinds, where earlier positions never see later ones; `None` for bidirectional attention.
    ///
    /// # Shapes
    /// - `suffix`: `[batch, n, d_model]`, `prefix`: `[1, p, d_model]`; output: `[batch, n, d_model]`
    pub fn forward_suffix(
        &self,
        suffix: Tensor<B, 3>,
        prefix: Tensor<B, 3>,
        input: &ModelInput<B>,
    ) -> Option<Tensor<B, 3>> {
        let [b, n, d] = suffix.dims();
        let p = prefix.dims()[1];
        if self.kind == AttentionKind::Bidirectional || p == 0 {
            return None;
        }
        let q = self.heads(self.q.forward(suffix.clone()));
        let k = self.heads(self.k.forward(suffix.clone()));
        let v = self.heads(self.v.forward(suffix.clone()));
        let kp = self.heads(self.k.forward(prefix.clone()));
        let vp = self.heads(self.v.forward(prefix));
        // Scores against the prefix keys broadcast [1, h, p, dh] over the batch.
        let mut scores = Tensor::cat(vec![q.clone().matmul(kp.swap_dims(2, 3)), q.matmul(k.swap_dims(2, 3))], 3);
        if self.scale != 1.0 {
            scores = scores * self.scale;
        }
        if let Some(bias) = self.kind.bias(input, n, p + n, p, &suffix.device()) {
            scores = scores + bias;
        }
        let probs = softmax(scores, 3);
        let h = self.n_heads;
        let ctx = probs.clone().slice([0..b, 0..h, 0..n, 0..p]).matmul(vp)
            + probs.slice([0..b, 0..h, 0..n, p..p + n]).matmul(v);
        Some(self.o.forward(ctx.swap_dims(1, 2).reshape([b, n, d])))
    }

    /// `[batch, seq, d_model]` → `[batch, heads, seq, d_head]`.
    fn heads(&self, x: Tensor<B, 3>) -> Tensor<B, 4> {
        let [b, s, d] = x.dims();
        x.reshape([b, s, self.n_heads, d / self.n_heads]).swap_dims(1, 2)
    }
}
