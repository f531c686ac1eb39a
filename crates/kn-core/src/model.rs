//! The interface every architecture implements, and the hooked forward pass built on it.
//!
//! A transformer is seen as `embed → [attention half → FFN activation → FFN output] × L → logits`.
//! Splitting each block at the FFN post-activation (TransformerLens `blocks.{l}.mlp.hook_post`)
//! lets the algorithms read and replace the knowledge-neuron activations, and restart a forward
//! pass from a cached residual stream at any layer without recomputing the layers below it.

use burn::tensor::{backend::Backend, Int, Tensor, TensorData};

use crate::hooks::{FfnHook, NoHook};

/// Where the model reads the target token's logit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Objective {
    /// Masked language model (BERT): the target is predicted at a `[MASK]` position.
    MaskedLm,
    /// Causal language model (GPT-2, GPT-Neo): the target is predicted at the last prompt
    /// position and follows the prompt.
    CausalLm,
}

/// Sizes of a model, as the algorithms need them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ModelDims {
    /// Number of transformer blocks.
    pub n_layers: usize,
    /// Width of the residual stream.
    pub d_model: usize,
    /// Number of FFN neurons per layer.
    pub d_ff: usize,
    /// Vocabulary size (number of logits).
    pub vocab_size: usize,
    /// Longest sequence the position embeddings allow.
    pub max_positions: usize,
}

/// A batch of token sequences, with optional token types and padding mask.
///
/// # Shapes
/// - `input_ids`: `[batch, seq]`
/// - `token_type_ids`: `[batch, seq]`
/// - `attention_mask`: `[batch, seq]`, 1.0 for real tokens and 0.0 for padding.
#[derive(Debug, Clone)]
pub struct ModelInput<B: Backend> {
    /// Token ids.
    pub input_ids: Tensor<B, 2, Int>,
    /// Segment ids (BERT); `None` means all zeros.
    pub token_type_ids: Option<Tensor<B, 2, Int>>,
    /// Padding mask; `None` means no padding.
    pub attention_mask: Option<Tensor<B, 2>>,
}

impl<B: Backend> ModelInput<B> {
    /// One unpadded sequence.
    ///
    /// # Shapes
    /// - output `input_ids`: `[1, ids.len()]`
    pub fn from_ids(ids: &[u32], device: &B::Device) -> Self {
        let data: Vec<i64> = ids.iter().map(|&i| i64::from(i)).collect();
        let input_ids = Tensor::from_data(TensorData::new(data, [1, ids.len()]), device);
        Self { input_ids, token_type_ids: None, attention_mask: None }
    }

    /// Several sequences, right-padded with `pad_id` to the longest one, with the padding mask set.
    ///
    /// # Shapes
    /// - output `input_ids` and `attention_mask`: `[seqs.len(), max_len]`
    pub fn from_batch(seqs: &[Vec<u32>], pad_id: u32, device: &B::Device) -> Self {
        let max_len = seqs.iter().map(Vec::len).max().unwrap_or(0);
        let mut ids = Vec::with_capacity(seqs.len() * max_len);
        let mut mask = Vec::with_capacity(seqs.len() * max_len);
        for s in seqs {
            for j in 0..max_len {
                ids.push(i64::from(s.get(j).copied().unwrap_or(pad_id)));
                mask.push(if j < s.len() { 1.0f32 } else { 0.0 });
            }
        }
        let shape = [seqs.len(), max_len];
        Self {
            input_ids: Tensor::from_data(TensorData::new(ids, shape), device),
            token_type_ids: None,
            attention_mask: Some(Tensor::from_data(TensorData::new(mask, shape), device)),
        }
    }

    /// Sets the segment ids (BERT), one row per sequence, padded with 0.
    pub fn with_token_types(mut self, types: &[Vec<u32>], device: &B::Device) -> Self {
        let [b, s] = self.input_ids.dims();
        let mut data = Vec::with_capacity(b * s);
        for row in 0..b {
            for j in 0..s {
                let t = types.get(row).and_then(|r| r.get(j)).copied().unwrap_or(0);
                data.push(i64::from(t));
            }
        }
        self.token_type_ids = Some(Tensor::from_data(TensorData::new(data, [b, s]), device));
        self
    }

    /// `[batch, seq]` of the ids.
    pub fn dims(&self) -> [usize; 2] {
        self.input_ids.dims()
    }
}

/// A transformer language model seen through its FFN neurons.
///
/// Implementations normalise weight layouts at load time so that nothing here depends on the
/// architecture. Every method is a pure function of the weights and its inputs. Models are
/// `Sync`: attribution runs independent passes over one model on several threads.
pub trait KnowledgeModel<B: Backend>: Sync {
    /// Sizes of the model.
    fn dims(&self) -> ModelDims;

    /// Where the target is read (masked or causal LM).
    fn objective(&self) -> Objective;

    /// Token (+ position, + segment) embeddings: the residual stream entering layer 0.
    ///
    /// # Shapes
    /// - output: `[batch, seq, d_model]`
    fn embed(&self, input: &ModelInput<B>) -> Tensor<B, 3>;

    /// The attention half of block `layer`, up to the FFN input residual (`resid_mid`).
    ///
    /// `resid` may have a larger batch than `input` when `input` has batch 1 or no padding
    /// mask: the masks broadcast.
    ///
    /// # Shapes
    /// - `resid`: `[batch, seq, d_model]`; output: `[batch, seq, d_model]`
    fn attention_half(&self, layer: usize, resid: Tensor<B, 3>, input: &ModelInput<B>) -> Tensor<B, 3>;

    /// FFN post-activation of block `layer`: the knowledge neurons.
    ///
    /// # Shapes
    /// - `resid_mid`: `[batch, seq, d_model]`; output: `[batch, seq, d_ff]`
    fn ffn_activation(&self, layer: usize, resid_mid: Tensor<B, 3>) -> Tensor<B, 3>;

    /// FFN output projection and the rest of block `layer`, given its (possibly patched) activations.
    ///
    /// Must act on each position independently (projection, residual, layer norm): callers run
    /// it on selected rows only.
    ///
    /// # Shapes
    /// - `resid_mid`: `[batch, seq, d_model]`, `act`: `[batch, seq, d_ff]`; output: `[batch, seq, d_model]`
    fn ffn_output(&self, layer: usize, resid_mid: Tensor<B, 3>, act: Tensor<B, 3>) -> Tensor<B, 3>;

    /// Final norm and LM head on whichever rows are given (select the target rows first: the
    /// head is position-wise).
    ///
    /// # Shapes
    /// - `resid`: `[batch, rows, d_model]`; output: `[batch, rows, vocab]`
    fn logits(&self, resid: Tensor<B, 3>) -> Tensor<B, 3>;

    /// Log-probabilities over the vocabulary, `log softmax(logits(resid))`. The default
    /// composes [`crate::predict::log_softmax`] from tensor ops; a model whose backend has a
    /// fused kernel for it (one pass for the values, one for the gradient) uses that.
    ///
    /// # Shapes
    /// - `resid`: `[batch, rows, d_model]`; output: `[batch, rows, vocab]`
    fn log_probs(&self, resid: Tensor<B, 3>) -> Tensor<B, 3> {
        crate::predict::log_softmax(self.logits(resid))
    }

    /// [`Self::log_probs`] at one token per row: row `j` of batch entry `b` at
    /// `ids[b · rows + j]`. The default takes the whole log-softmax and gathers; a model whose
    /// backend has a fused kernel for it skips the `[batch, rows, vocab]` log-softmax and the
    /// zero-filled gradient of the gather.
    ///
    /// # Shapes
    /// - `resid`: `[batch, rows, d_model]`, `ids`: `batch · rows` entries; output: `[batch, rows]`
    fn log_probs_at(&self, resid: Tensor<B, 3>, ids: &[u32]) -> Tensor<B, 2> {
        crate::predict::gather_tokens(self.log_probs(resid), ids)
    }

    /// FFN output weight of `layer`: row `i` is neuron `i`'s value vector.
    ///
    /// # Shapes
    /// - output: `[d_ff, d_model]`
    fn ffn_out_weight(&self, layer: usize) -> Tensor<B, 2>;

    /// Replaces the FFN output weight of `layer` (same shape as [`Self::ffn_out_weight`]).
    ///
    /// # Shapes
    /// - `weight`: `[d_ff, d_model]`
    fn set_ffn_out_weight(&mut self, layer: usize, weight: Tensor<B, 2>);

    /// The input embedding of token `id` (the word embedding row).
    ///
    /// # Shapes
    /// - output: `[d_model]`
    fn token_embedding(&self, id: u32) -> Tensor<B, 1>;

    /// Device the weights live on.
    fn device(&self) -> B::Device;

    /// Whether independent attribution passes should run concurrently, as many at once as
    /// rayon's pool has threads (see [`crate::schedule`]): worth it where the backend computes on the
    /// calling CPU thread and leaves cores idle between matrix products. The default is
    /// `false`: passes run one after another on the calling thread.
    fn concurrent_passes(&self) -> bool {
        false
    }

    /// Called once before attribution differentiates the model: a backend that keeps extra
    /// state for backward passes (the ndarray build's stored `Wᵀ`) builds it here, all at once,
    /// instead of inside the first passes. The default does nothing.
    fn prepare_gradients(&self) {}

    /// The attention half of block `layer` for the last `n` positions only, given the residual
    /// stream of the earlier positions (`prefix`, unchanged): possible when no earlier
    /// position attends to a later one (causal models). `None` when the model cannot, and the
    /// caller runs the whole sequence instead. `prefix` may also stack the prefixes of `P`
    /// prompts of one length: suffix row `b` then continues prompt `b % P`.
    ///
    /// # Shapes
    /// - `suffix`: `[batch, n, d_model]`, `prefix`: `[1 or P, seq - n, d_model]` (`batch` a
    ///   multiple of `P`); output: `[batch, n, d_model]`
    fn attention_half_suffix(
        &self,
        _layer: usize,
        _suffix: Tensor<B, 3>,
        _prefix: Tensor<B, 3>,
        _input: &ModelInput<B>,
    ) -> Option<Tensor<B, 3>> {
        None
    }

    /// The attention half of block `layer` on a residual stream that differs from `base`
    /// (the unchanged stream entering the block) at the positions `rows` only, at every
    /// position or, with `only_rows`, at `rows` only ([`KnowledgeModel::attention_half_rows`]).
    /// A model may then project only the changed rows to queries, keys and values and take the
    /// other rows' from `base`, computed once for the whole batch. `base` may stack `P` prompts
    /// of one length: batch row `b` then continues prompt `b % P`. `None` when the model has no
    /// such path (the caller runs the whole sequence).
    ///
    /// # Shapes
    /// - `resid`: `[batch, seq, d_model]`, `base`: `[1 or P, seq, d_model]` (`batch` a multiple
    ///   of `P`); output: `[batch, seq or rows.len(), d_model]`
    fn attention_half_changed(
        &self,
        _layer: usize,
        _resid: Tensor<B, 3>,
        _base: Tensor<B, 3>,
        _rows: &[usize],
        _only_rows: bool,
        _input: &ModelInput<B>,
    ) -> Option<Tensor<B, 3>> {
        None
    }

    /// The attention half of block `layer` at the positions `rows` only, every position of
    /// `resid` still serving as keys and values. Used where only some rows are read afterwards
    /// (the last block before the head). The default runs the whole sequence and selects.
    ///
    /// # Shapes
    /// - `resid`: `[batch, seq, d_model]`; output: `[batch, rows.len(), d_model]`
    fn attention_half_rows(
        &self,
        layer: usize,
        resid: Tensor<B, 3>,
        rows: &[usize],
        input: &ModelInput<B>,
    ) -> Tensor<B, 3> {
        gather_rows(self.attention_half(layer, resid, input), rows)
    }

    /// Plain forward pass.
    ///
    /// # Shapes
    /// - output: `[batch, seq, vocab]`
    fn forward(&self, input: &ModelInput<B>) -> Tensor<B, 3>
    where
        Self: Sized,
    {
        forward_hooked(self, input, &mut NoHook)
    }
}

/// Forward pass in which `hook` sees, and may replace, every layer's FFN post-activation.
///
/// # Shapes
/// - output: `[batch, seq, vocab]`
pub fn forward_hooked<B: Backend, M: KnowledgeModel<B> + ?Sized>(
    model: &M,
    input: &ModelInput<B>,
    hook: &mut dyn FfnHook<B>,
) -> Tensor<B, 3> {
    let resid = run_layers(model, model.embed(input), input, 0, hook);
    model.logits(resid)
}

/// Runs blocks `from..n_layers` on `resid` (the residual stream entering block `from`).
///
/// # Shapes
/// - `resid`: `[batch, seq, d_model]`; output: `[batch, seq, d_model]`
pub fn run_layers<B: Backend, M: KnowledgeModel<B> + ?Sized>(
    model: &M,
    mut resid: Tensor<B, 3>,
    input: &ModelInput<B>,
    from: usize,
    hook: &mut dyn FfnHook<B>,
) -> Tensor<B, 3> {
    for layer in from..model.dims().n_layers {
        let mid = model.attention_half(layer, resid, input);
        let act = hook.on_ffn(layer, model.ffn_activation(layer, mid.clone()));
        resid = model.ffn_output(layer, mid, act);
    }
    resid
}

/// The rows `rows` of the sequence axis, in that order.
///
/// # Shapes
/// - `t`: `[batch, seq, d]`; output: `[batch, rows.len(), d]`
pub fn gather_rows<B: Backend>(t: Tensor<B, 3>, rows: &[usize]) -> Tensor<B, 3> {
    let [b, _, d] = t.dims();
    if let [p] = rows {
        return t.slice([0..b, *p..*p + 1, 0..d]);
    }
    Tensor::cat(rows.iter().map(|&p| t.clone().slice([0..b, p..p + 1, 0..d])).collect(), 1)
}
