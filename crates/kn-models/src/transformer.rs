//! The one transformer every architecture is loaded into.

use crate::nn::DualMatmul;
use burn::tensor::Tensor;

use kn_core::{KnowledgeModel, ModelDims, ModelInput, Objective};

use crate::nn::{Block, Embeddings, LmHead};

/// A language model as embeddings, blocks and a head; BERT, GPT-2, GPT-Neo and the Llama
/// family differ only in the data these hold (norm kind and placement, positions, attention
/// heads and masks, FFN gate and activation, head).
#[derive(Debug, Clone)]
pub struct Transformer<B: DualMatmul> {
    /// Input embeddings.
    pub embeddings: Embeddings<B>,
    /// Transformer blocks.
    pub blocks: Vec<Block<B>>,
    /// Final norm and LM head.
    pub head: LmHead<B>,
    /// Masked or causal LM.
    pub objective: Objective,
    /// Longest input: the position table's size, or the context length of a rotary model.
    pub max_positions: usize,
}

impl<B: DualMatmul> KnowledgeModel<B> for Transformer<B> {
    fn dims(&self) -> ModelDims {
        let [vocab_size, d_model] = self.embeddings.word.dims();
        ModelDims {
            n_layers: self.blocks.len(),
            d_model,
            d_ff: self.blocks.first().map_or(0, |b| b.ffn_in.weight().dims()[1]),
            vocab_size,
            max_positions: self.max_positions,
        }
    }

    fn objective(&self) -> Objective {
        self.objective
    }

    fn embed(&self, input: &ModelInput<B>) -> Tensor<B, 3> {
        self.embeddings.forward(input)
    }

    fn attention_half(&self, layer: usize, resid: Tensor<B, 3>, input: &ModelInput<B>) -> Tensor<B, 3> {
        self.blocks[layer].attention_half(resid, input)
    }

    fn ffn_activation(&self, layer: usize, resid_mid: Tensor<B, 3>) -> Tensor<B, 3> {
        self.blocks[layer].ffn_activation(resid_mid)
    }

    fn ffn_output(&self, layer: usize, resid_mid: Tensor<B, 3>, act: Tensor<B, 3>) -> Tensor<B, 3> {
        self.blocks[layer].ffn_output(resid_mid, act)
    }

    fn logits(&self, resid: Tensor<B, 3>) -> Tensor<B, 3> {
        self.head.forward(resid)
    }

    fn log_probs(&self, resid: Tensor<B, 3>) -> Tensor<B, 3> {
        log_softmax_of(self.head.forward(resid))
    }

    fn log_probs_at(&self, resid: Tensor<B, 3>, ids: &[u32]) -> Tensor<B, 2> {
        let logits = self.head.forward(resid);
        match B::fused_picked_log_softmax(logits.clone().into_primitive().tensor(), ids) {
            Some(y) => Tensor::from_primitive(burn::tensor::TensorPrimitive::Float(y)),
            // The head ran once: the fallback takes the log-softmax of the same logits.
            None => kn_core::predict::gather_tokens(log_softmax_of(logits), ids),
        }
    }

    fn ffn_out_weight(&self, layer: usize) -> Tensor<B, 2> {
        self.blocks[layer].ffn_out.weight()
    }

    fn set_ffn_out_weight(&mut self, layer: usize, weight: Tensor<B, 2>) {
        self.blocks[layer].ffn_out.set_weight(weight);
    }

    fn token_embedding(&self, id: u32) -> Tensor<B, 1> {
        let id = id as usize;
        let d = self.embeddings.word.dims()[1];
        self.embeddings.word.clone().slice([id..id + 1, 0..d]).reshape([d])
    }

    fn device(&self) -> B::Device {
        self.embeddings.word.device()
    }

    fn concurrent_passes(&self) -> bool {
        B::CONCURRENT_PASSES
    }

    fn prepare_gradients(&self) {
        for b in &self.blocks {
            let a = &b.attn;
            for lin in [&a.q, &a.k, &a.v, &a.o, &b.ffn_in, &b.ffn_out].into_iter().chain(b.ffn_gate.as_ref()) {
                lin.prepare_transpose();
            }
        }
        if let Some(t) = &self.head.transform {
            t.dense.prepare_transpose();
        }
        self.head.unembed.prepare_transpose();
        // The head multiplies few rows (the targets) by the whole vocabulary once per pass,
        // forwards and backwards: packed once, not per product (two copies of the embedding
        // table: +188 MB for bert-base's head, +309 MB for gpt2's). Packing every weight's
        // forward copy so was measured no faster in attribution (README, session 23), and
        // would cost the weights' memory once more (twice with the backward copies).
        self.head.unembed.prepare_packed();
    }

    fn attention_half_rows(
        &self,
        layer: usize,
        resid: Tensor<B, 3>,
        rows: &[usize],
        input: &ModelInput<B>,
    ) -> Tensor<B, 3> {
        self.blocks[layer].attention_half_rows(resid, rows, input)
    }

    fn attention_half_changed(
        &self,
        layer: usize,
        resid: Tensor<B, 3>,
        base: Tensor<B, 3>,
        rows: &[usize],
        only_rows: bool,
        input: &ModelInput<B>,
    ) -> Option<Tensor<B, 3>> {
        Some(self.blocks[layer].attention_half_changed(resid, base, rows, only_rows, input))
    }

    fn attention_half_suffix(
        &self,
        layer: usize,
        suffix: Tensor<B, 3>,
        prefix: Tensor<B, 3>,
        input: &ModelInput<B>,
    ) -> Option<Tensor<B, 3>> {
        self.blocks[layer].attention_half_suffix(suffix, prefix, input)
    }
}

/// `log softmax(logits)` over the vocabulary: the backend's fused kernel where it has one, else
/// composed ([`kn_core::predict::log_softmax`]).
///
/// # Shapes
/// - `logits`, output: `[batch, rows, vocab]`
fn log_softmax_of<B: DualMatmul>(logits: Tensor<B, 3>) -> Tensor<B, 3> {
    match B::fused_log_softmax(logits.clone().into_primitive().tensor()) {
        Some(y) => Tensor::from_primitive(burn::tensor::TensorPrimitive::Float(y)),
        None => kn_core::predict::log_softmax(logits),
    }
}
