//! Multi-head self-attention, shared by all architectures: optional rotary positions and
//! grouped-query attention (fewer key/value heads than query heads) as data.
//!
//! Ports `BertSelfAttention`+`BertSelfOutput`, `GPT2Attention`, `GPTNeoSelfAttention` and
//! `LlamaAttention` (also Mistral's and Qwen2's, which differ only in masks and biases):
//! <https://github.com/huggingface/transformers/blob/v4.46.0/src/transformers/models/bert/modeling_bert.py>,
//! <https://github.com/huggingface/transformers/blob/v4.46.0/src/transformers/models/gpt2/modeling_gpt2.py>,
//! <https://github.com/huggingface/transformers/blob/v4.46.0/src/transformers/models/gpt_neo/modeling_gpt_neo.py>,
//! <https://github.com/huggingface/transformers/blob/v4.57.6/src/transformers/models/llama/modeling_llama.py>.

use super::DualMatmul;
use burn::tensor::{activation::softmax, Tensor, TensorPrimitive};

use kn_core::{gather_rows, ModelInput};

use super::{AttentionKind, Linear, Rotary};

/// Self-attention with separate q/k/v/o projections (GPT-2's fused `c_attn` is split at load).
///
/// With grouped-query attention, query head `h` reads key/value head `h / (n_heads /
/// n_kv_heads)`. The keys and values are not repeated per query head: the queries of a group
/// are stacked along the sequence axis (`[batch, kv_heads, group · seq, head_dim]`) and
/// multiplied by their group's keys once.
#[derive(Debug, Clone)]
pub struct Attention<B: DualMatmul> {
    /// Query projection, `[d_model, n_heads · head_dim]`.
    pub q: Linear<B>,
    /// Key projection, `[d_model, n_kv_heads · head_dim]`.
    pub k: Linear<B>,
    /// Value projection, `[d_model, n_kv_heads · head_dim]`.
    pub v: Linear<B>,
    /// Output projection, `[n_heads · head_dim, d_model]`.
    pub o: Linear<B>,
    /// Number of query heads.
    pub n_heads: usize,
    /// Number of key/value heads (divides `n_heads`; equal to it without GQA).
    pub n_kv_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// Factor applied to `q·k` (`1/sqrt(d_head)`, or 1 for GPT-Neo).
    pub scale: f64,
    /// Which keys each query sees.
    pub kind: AttentionKind,
    /// Rotary positions of queries and keys (Llama family); `None` for learned absolute tables.
    pub rope: Option<Rotary>,
}

impl<B: DualMatmul> Attention<B> {
    /// Attention over the whole sequence.
    ///
    /// # Shapes
    /// - `x`: `[batch, seq, d_model]`; output: `[batch, seq, d_model]`
    pub fn forward(&self, x: Tensor<B, 3>, input: &ModelInput<B>) -> Tensor<B, 3> {
        let s = x.dims()[1];
        let bias = self.kind.bias(input, s, s, 0, &x.device());
        let positions: Vec<usize> = (0..s).collect();
        let q = self.queries(x.clone(), &positions);
        let (k, v) = self.keys_values(x, &positions);
        self.output(self.attend(q, k, v, bias), s)
    }

    /// Attention output at the positions `rows` only; keys and values from every position.
    ///
    /// # Shapes
    /// - `x`: `[batch, seq, d_model]`; output: `[batch, rows.len(), d_model]`
    pub fn forward_rows(&self, x: Tensor<B, 3>, rows: &[usize], input: &ModelInput<B>) -> Tensor<B, 3> {
        let s = x.dims()[1];
        let bias = self.kind.bias(input, s, s, 0, &x.device()).map(|bias| query_rows(bias, rows));
        let q = self.queries(gather_rows(x.clone(), rows), rows);
        if self.folds_keys_values(rows.len(), s) {
            return self.output(self.attend_folded(q, x, bias), rows.len());
        }
        let positions: Vec<usize> = (0..s).collect();
        let (k, v) = self.keys_values(x, &positions);
        self.output(self.attend(q, k, v, bias), rows.len())
    }

    /// Whether [`Attention::forward_rows`] of `rows` query rows over `seq` positions folds the
    /// key and value projections into the queries and the context ([`Attention::attend_folded`]):
    /// without rotary positions, where it multiplies less.
    pub fn folds_keys_values(&self, rows: usize, seq: usize) -> bool {
        let d_model = self.k.weight().dims()[0];
        folds_keys_values(self.rope.is_some(), d_model, self.n_heads, self.n_kv_heads, self.head_dim, rows, seq)
    }

    /// `softmax(q · kᵀ · scale + bias) · v` for keys `k = x W_k + b_k` and values
    /// `v = x W_v + b_v` that are never formed: per head, `q · k_i = (W_k q) · x_i + q · b_k`,
    /// whose last term is the same for every key and cancels in the softmax, and
    /// `Σ_i p_i v_i = (Σ_i p_i x_i) W_v + b_v` since the probabilities sum to one. So the
    /// queries go through `W_kᵀ` and the probability-weighted sums of the rows through `W_v`,
    /// one row each per query row and head, instead of every row of `x` through `W_k` and
    /// `W_v`: for the last block of an attribution pass (one target row against a whole
    /// sequence, no rotary positions) the keys and values were that block's largest products,
    /// forwards and backwards. The same sums in real arithmetic, added in another order.
    ///
    /// # Shapes
    /// - `q`: `[batch, kv_heads, group · n, head_dim]`, `x`: `[batch, seq, d_model]`, `bias`:
    ///   `[batch_or_1, 1, n, seq]`; output: like `q`
    fn attend_folded(&self, q: Tensor<B, 4>, x: Tensor<B, 3>, bias: Option<Tensor<B, 4>>) -> Tensor<B, 4> {
        let [b, kv, rows, dh] = q.dims();
        let [_, s, d] = x.dims();
        // Per key/value head, `W_kᵀ` as `[kv, dh, d]` and `W_v` as `[kv, d, dh]`.
        let wk_t = self.k.weight().transpose().reshape([kv, dh, d]);
        let wv = self.v.weight().reshape([d, kv, dh]).swap_dims(0, 1);
        // `[batch, kv, rows, ·]` ↔ `[kv, batch · rows, ·]`, heads as the matmul batch.
        let by_head = |t: Tensor<B, 4>, w: usize| t.swap_dims(0, 1).reshape([kv, b * rows, w]);
        let by_batch = |t: Tensor<B, 3>, w: usize| t.reshape([kv, b, rows, w]).swap_dims(0, 1);
        let folded = by_batch(by_head(q, dh).matmul(wk_t), d).reshape([b, kv * rows, d]);
        let scores = folded.matmul(x.clone().swap_dims(1, 2)).reshape([b, kv, rows, s]);
        let scores = if self.scale != 1.0 { scores * self.scale } else { scores };
        let probs = self.probs(vec![scores], bias);
        let sums = probs.reshape([b, kv * rows, s]).matmul(x).reshape([b, kv, rows, d]);
        let ctx = by_batch(by_head(sums, d).matmul(wv), dh);
        match &self.v.bias {
            Some(bv) => ctx + bv.clone().reshape([1, kv, 1, dh]),
            None => ctx,
        }
    }

    /// Attention over a sequence that differs from `base` at the positions `rows` only, whose
    /// rows are `changed`: the queries, keys and values of every other position are `base`'s
    /// (computed once, batch 1 or `P`, and repeated to the batch), and only the changed rows go
    /// through the projections. The output covers every position, or with `only_rows` the
    /// positions `rows` (as [`Attention::forward_rows`]). The changed rows of batch row `b`
    /// belong to base `b % P`.
    ///
    /// Integrated gradients perturbs one layer's activations at the target rows only: entering
    /// the next block, every other row of the residual stream is still the unmodified pass's,
    /// and the projections of those rows would be recomputed for every quadrature point.
    ///
    /// # Shapes
    /// - `base`: `[1 or P, seq, d_model]`, `changed`: `[batch, rows.len(), d_model]` (`batch` a
    ///   multiple of `P`); output: `[batch, seq or rows.len(), d_model]`
    pub fn forward_changed(
        &self,
        base: Tensor<B, 3>,
        changed: Tensor<B, 3>,
        rows: &[usize],
        only_rows: bool,
        input: &ModelInput<B>,
    ) -> Tensor<B, 3> {
        let s = base.dims()[1];
        let batch = changed.dims()[0];
        let all: Vec<usize> = (0..s).collect();
        // `base`'s heads repeated to the batch, with the changed rows' heads in their places.
        let splice = |base: Tensor<B, 4>, new: Tensor<B, 4>| {
            let [p, h, _, dh] = base.dims();
            let mut t = if batch > p { base.repeat_dim(0, batch / p.max(1)) } else { base };
            for (i, &pos) in rows.iter().enumerate() {
                let row = new.clone().slice([0..batch, 0..h, i..i + 1, 0..dh]);
                t = t.slice_assign([0..batch, 0..h, pos..pos + 1, 0..dh], row);
            }
            t
        };
        let (kb, vb) = self.keys_values(base.clone(), &all);
        let (kn, vn) = self.keys_values(changed.clone(), rows);
        let (k, v) = (splice(kb, kn), splice(vb, vn));
        let bias = self.kind.bias(input, s, s, 0, &changed.device());
        if only_rows {
            let bias = bias.map(|bias| query_rows(bias, rows));
            let q = self.queries(changed, rows);
            return self.output(self.attend(q, k, v, bias), rows.len());
        }
        let q = self.group(splice(self.query_heads(base, &all), self.query_heads(changed, rows)));
        self.output(self.attend(q, k, v, bias), s)
    }

    /// Attention output of the last `n` positions, the keys and values of the earlier `p`
    /// positions computed from `prefix` (batch 1, broadcast over the batch; or batch `P`, one
    /// prefix per stacked prompt, suffix row `b` attending to prefix `b % P`). Only for causal
    /// kinds, where earlier positions never see later ones; `None` for bidirectional attention.
    ///
    /// # Shapes
    /// - `suffix`: `[batch, n, d_model]`, `prefix`: `[1 or P, p, d_model]` (`batch` a multiple
    ///   of `P`); output: `[batch, n, d_model]`
    pub fn forward_suffix(
        &self,
        suffix: Tensor<B, 3>,
        prefix: Tensor<B, 3>,
        input: &ModelInput<B>,
    ) -> Option<Tensor<B, 3>> {
        let n = suffix.dims()[1];
        let p = prefix.dims()[1];
        if self.kind == AttentionKind::Bidirectional || p == 0 {
            return None;
        }
        let own: Vec<usize> = (p..p + n).collect();
        let earlier: Vec<usize> = (0..p).collect();
        let q = self.queries(suffix.clone(), &own);
        let (k, v) = self.keys_values(suffix, &own);
        let (mut kp, mut vp) = self.keys_values(prefix, &earlier);
        // Prefixes of several stacked prompts ([P, kv, p, dh], batch row b of the suffix
        // belonging to prompt b % P) are repeated to the batch; a single prefix broadcasts.
        let (b, stacked) = (q.dims()[0], kp.dims()[0]);
        if stacked > 1 && b > stacked {
            kp = kp.repeat_dim(0, b / stacked);
            vp = vp.repeat_dim(0, b / stacked);
        }
        // Scores against the prefix keys broadcast [1, kv, p, dh] over the batch.
        let bias = self.kind.bias(input, n, p + n, p, &q.device());
        let probs = self.probs(vec![self.scores(q.clone(), kp), self.scores(q, k)], bias);
        let [b, kv, rows, _] = probs.dims();
        let ctx = probs.clone().slice([0..b, 0..kv, 0..rows, 0..p]).matmul(vp)
            + probs.slice([0..b, 0..kv, 0..rows, p..p + n]).matmul(v);
        Some(self.output(ctx, n))
    }

    /// `softmax(scores + bias) · v`: one fused kernel where the backend has it
    /// ([`DualMatmul::fused_attention`]), else composed from burn's primitives.
    ///
    /// # Shapes
    /// - `q`: `[batch, kv_heads, group · n, head_dim]`, `k`, `v`: `[batch, kv_heads, keys,
    ///   head_dim]`, `bias`: `[batch_or_1, 1, n, keys]`; output: like `q`
    fn attend(&self, q: Tensor<B, 4>, k: Tensor<B, 4>, v: Tensor<B, 4>, bias: Option<Tensor<B, 4>>) -> Tensor<B, 4> {
        let prim = |t: &Tensor<B, 4>| t.clone().into_primitive().tensor();
        let bias_p = bias.as_ref().map(prim);
        match B::fused_attention(prim(&q), prim(&k), prim(&v), bias_p.as_ref(), self.scale) {
            Some(ctx) => Tensor::from_primitive(TensorPrimitive::Float(ctx)),
            None => self.probs(vec![self.scores(q, k)], bias).matmul(v),
        }
    }

    /// Query heads of `x` (at absolute `positions`), grouped by key/value head.
    ///
    /// # Shapes
    /// - `x`: `[batch, n, d_model]`; output: `[batch, kv_heads, group · n, head_dim]`
    fn queries(&self, x: Tensor<B, 3>, positions: &[usize]) -> Tensor<B, 4> {
        self.group(self.query_heads(x, positions))
    }

    /// Query heads of `x` (at absolute `positions`), one per query head.
    ///
    /// # Shapes
    /// - `x`: `[batch, n, d_model]`; output: `[batch, n_heads, n, head_dim]`
    fn query_heads(&self, x: Tensor<B, 3>, positions: &[usize]) -> Tensor<B, 4> {
        self.rotate(self.heads(self.q.forward(x), self.n_heads), positions)
    }

    /// Query heads stacked by key/value head (the queries of a group along the sequence axis).
    ///
    /// # Shapes
    /// - `q`: `[batch, n_heads, n, head_dim]`; output: `[batch, kv_heads, group · n, head_dim]`
    fn group(&self, q: Tensor<B, 4>) -> Tensor<B, 4> {
        let group = self.n_heads / self.n_kv_heads;
        if group == 1 {
            return q;
        }
        let [b, _, n, dh] = q.dims();
        q.reshape([b, self.n_kv_heads, group * n, dh])
    }

    /// Key and value heads of `x` (keys rotated to absolute `positions`).
    ///
    /// # Shapes
    /// - `x`: `[batch, n, d_model]`; outputs: `[batch, kv_heads, n, head_dim]`
    fn keys_values(&self, x: Tensor<B, 3>, positions: &[usize]) -> (Tensor<B, 4>, Tensor<B, 4>) {
        let k = self.rotate(self.heads(self.k.forward(x.clone()), self.n_kv_heads), positions);
        (k, self.heads(self.v.forward(x), self.n_kv_heads))
    }

    /// Scaled `q · kᵀ`.
    ///
    /// # Shapes
    /// - `q`: `[batch, kv_heads, rows, head_dim]`, `k`: `[batch_or_1, kv_heads, keys, head_dim]`;
    ///   output: `[batch, kv_heads, rows, keys]`
    fn scores(&self, q: Tensor<B, 4>, k: Tensor<B, 4>) -> Tensor<B, 4> {
        let scores = q.matmul(k.swap_dims(2, 3));
        if self.scale != 1.0 {
            scores * self.scale
        } else {
            scores
        }
    }

    /// Softmax over the keys of the concatenated score blocks, shifted by `bias` (built for the
    /// query rows of one head; repeated for each query head of a group).
    ///
    /// # Shapes
    /// - `blocks[i]`: `[batch, kv_heads, group · n, keys_i]`, `bias`: `[batch_or_1, 1, n or 1, Σ keys_i]`;
    ///   output: `[batch, kv_heads, group · n, Σ keys_i]`
    fn probs(&self, mut blocks: Vec<Tensor<B, 4>>, bias: Option<Tensor<B, 4>>) -> Tensor<B, 4> {
        let mut scores = match blocks.len() {
            1 => blocks.remove(0),
            _ => Tensor::cat(blocks, 3),
        };
        if let Some(bias) = bias {
            let group = self.n_heads / self.n_kv_heads;
            // A padding-only bias has one query row and broadcasts as it is.
            scores = scores + if group > 1 && bias.dims()[2] > 1 { bias.repeat_dim(2, group) } else { bias };
        }
        softmax(scores, 3)
    }

    /// Merges grouped heads back and applies the output projection.
    ///
    /// # Shapes
    /// - `ctx`: `[batch, kv_heads, group · n, head_dim]`; output: `[batch, n, d_model]`
    fn output(&self, ctx: Tensor<B, 4>, n: usize) -> Tensor<B, 3> {
        let [b, _, _, dh] = ctx.dims();
        // Without grouped heads the shape is already `[b, heads, n, dh]`: a reshape to it would
        // still copy a context laid out as `[b, n, heads, dh]` (the fused core's layout), which
        // the swap below makes contiguous for the merge.
        let ctx = if ctx.dims() == [b, self.n_heads, n, dh] { ctx } else { ctx.reshape([b, self.n_heads, n, dh]) };
        self.o.forward(ctx.swap_dims(1, 2).reshape([b, n, self.n_heads * dh]))
    }

    /// Rotary positions, when the layer has them.
    fn rotate(&self, x: Tensor<B, 4>, positions: &[usize]) -> Tensor<B, 4> {
        match &self.rope {
            Some(rope) => rope.apply(x, positions),
            None => x,
        }
    }

    /// `[batch, seq, heads · head_dim]` → `[batch, heads, seq, head_dim]`.
    fn heads(&self, x: Tensor<B, 3>, heads: usize) -> Tensor<B, 4> {
        let [b, s, _] = x.dims();
        x.reshape([b, s, heads, self.head_dim]).swap_dims(1, 2)
    }
}

/// Whether attention of `rows` query rows over `seq` positions multiplies less with the key
/// and value projections folded into the queries and the context (see
/// [`Attention::forward_rows`]): never with rotary positions (a key's rotation depends on its
/// position). Folded, each query row and head goes through `W_kᵀ` and `W_v` once and meets
/// every position twice in `d_model` wide rows; projected, every position goes through `W_k`
/// and `W_v` and each query row and head meets every position twice in `head_dim` wide rows.
pub fn folds_keys_values(
    rotary: bool,
    d_model: usize,
    n_heads: usize,
    n_kv_heads: usize,
    head_dim: usize,
    rows: usize,
    seq: usize,
) -> bool {
    let (q_width, kv_width) = (n_heads * head_dim, n_kv_heads * head_dim);
    let folded = rows * d_model * 2 * (q_width + n_heads * seq);
    let projected = seq * d_model * 2 * kv_width + rows * 2 * seq * q_width;
    !rotary && folded < projected
}

/// The query rows `rows` of an attention bias (a padding-only bias, one row for all queries,
/// as it is).
///
/// # Shapes
/// - `bias`: `[batch_or_1, 1, queries or 1, keys]`; output: `[batch_or_1, 1, rows.len() or 1, keys]`
fn query_rows<B: DualMatmul>(bias: Tensor<B, 4>, rows: &[usize]) -> Tensor<B, 4> {
    let [bb, one, queries, keys] = bias.dims();
    if queries == 1 {
        // Padding only: one row for every query.
        return bias;
    }
    Tensor::cat(rows.iter().map(|&r| bias.clone().slice([0..bb, 0..one, r..r + 1, 0..keys])).collect(), 2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;

    type AB = crate::backend::AutodiffBackend;

    fn tensor<const D: usize>(shape: [usize; D], seed: f32) -> Tensor<AB, D> {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37 + seed).sin() * 0.5).collect();
        Tensor::from_data(TensorData::new(v, shape), &Default::default())
    }

    fn linear(d_in: usize, d_out: usize, seed: f32) -> Linear<AB> {
        Linear::new(tensor([d_in, d_out], seed), Some(tensor([d_out], seed + 0.5)))
    }

    #[test]
    fn folded_keys_and_values_give_the_projected_attention_and_its_gradient() {
        // Grouped-query heads (2 query heads per key/value head), biases everywhere and a
        // padded position: the folded rows against the whole sequence's attention at those rows.
        let (d, heads, kv_heads, dh, s, batch) = (32, 2, 1, 16, 9, 3);
        let attn = Attention {
            q: linear(d, heads * dh, 1.0),
            k: linear(d, kv_heads * dh, 2.0),
            v: linear(d, kv_heads * dh, 3.0),
            o: linear(heads * dh, d, 4.0),
            n_heads: heads,
            n_kv_heads: kv_heads,
            head_dim: dh,
            scale: 0.25,
            kind: AttentionKind::Bidirectional,
            rope: None,
        };
        let rows = [2, 5];
        assert!(attn.folds_keys_values(rows.len(), s));
        let dev = Default::default();
        let mut input = ModelInput::<AB>::from_ids(&[1; 9], &dev);
        let mut mask = vec![1.0f32; s];
        mask[7] = 0.0;
        input.attention_mask = Some(Tensor::from_data(TensorData::new(mask, [1, s]), &dev));
        let g = tensor([batch, rows.len(), d], 5.0);
        let run = |folded: bool| {
            let x = tensor([batch, s, d], 0.5).require_grad();
            let out = if folded {
                attn.forward_rows(x.clone(), &rows, &input)
            } else {
                gather_rows(attn.forward(x.clone(), &input), &rows)
            };
            let grads = (out.clone() * g.clone()).sum().backward();
            let grad = x.grad(&grads).map(|t| t.into_data().to_vec::<f32>().unwrap_or_default());
            (out.inner().into_data().to_vec::<f32>().unwrap_or_default(), grad.unwrap_or_default())
        };
        let ((y, gy), (want, gwant)) = (run(true), run(false));
        for (what, a, b) in [("output", &y, &want), ("input gradient", &gy, &gwant)] {
            assert_eq!(a.len(), b.len(), "{what}");
            let max = b.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let err = a.iter().zip(b).fold(0.0f32, |m, (p, q)| m.max((p - q).abs())) / max;
            println!("folded vs projected {what}: max error {err:.2e} of the largest value {max:.3}");
            assert!(max > 0.0 && err < 1e-5, "{what}: relative error {err}");
        }
    }
}
