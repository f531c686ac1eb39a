//! Token, position and segment embeddings.

use super::DualMatmul;
use burn::tensor::{Int, Tensor};

use kn_core::ModelInput;

use super::Norm;

/// `LN?(E_tok[ids] + E_pos?[0..s] + E_type?[types])`.
#[derive(Debug, Clone)]
pub struct Embeddings<B: DualMatmul> {
    /// Token embeddings, `[vocab, d_model]`.
    pub word: Tensor<B, 2>,
    /// Learned absolute positions, `[max_positions, d_model]`; `None` where attention rotates
    /// queries and keys instead (RoPE).
    pub position: Option<Tensor<B, 2>>,
    /// Segment embeddings, `[type_vocab, d_model]` (BERT).
    pub token_type: Option<Tensor<B, 2>>,
    /// Norm after the sum (BERT).
    pub norm: Option<Norm<B>>,
}

impl<B: DualMatmul> Embeddings<B> {
    /// Embeds a batch of sequences.
    ///
    /// # Shapes
    /// - output: `[batch, seq, d_model]`
    pub fn forward(&self, input: &ModelInput<B>) -> Tensor<B, 3> {
        let [b, s] = input.dims();
        let d = self.word.dims()[1];
        let lookup = |table: &Tensor<B, 2>, ids: Tensor<B, 2, Int>| {
            table.clone().select(0, ids.reshape([b * s])).reshape([b, s, d])
        };
        let mut x = lookup(&self.word, input.input_ids.clone());
        if let Some(position) = &self.position {
            x = x + position.clone().slice([0..s, 0..d]).unsqueeze::<3>();
        }
        if let Some(types) = &self.token_type {
            x = match &input.token_type_ids {
                Some(ids) => x + lookup(types, ids.clone()),
                None => x + types.clone().slice([0..1, 0..d]).unsqueeze::<3>(),
            };
        }
        match &self.norm {
            Some(norm) => norm.forward(x),
            None => x,
        }
    }
}
