//! Weight interventions on the FFN output vectors (erase, edit), with an undo that restores the
//! weights bit-exactly.

use burn::tensor::{backend::Backend, Tensor};
use serde::{Deserialize, Serialize};

use crate::intervene::check_neurons;
use crate::predict::to_vec;
use crate::{KnError, KnowledgeModel, NeuronId};

/// What an erased value vector becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fill {
    /// Zeros.
    Zero,
    /// The embedding of this token (EAI "unk": the `[UNK]` embedding).
    Token(u32),
}

/// How a value vector is moved from the old answer to the new one.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EditRule {
    /// EAI: `v ← v − λ·e_old + λ·e_new` (λ = 2).
    Eai {
        /// λ.
        lambda: f32,
    },
    /// The paper: `v ← v − λ1·(|v|/|e_old|)·e_old + λ2·(|v|/|e_new|)·e_new` (λ1 = 1, λ2 = 8).
    Paper {
        /// Weight of the removal.
        lambda1: f32,
        /// Weight of the addition.
        lambda2: f32,
    },
}

impl EditRule {
    /// EAI's constants.
    pub fn eai() -> Self {
        Self::Eai { lambda: 2.0 }
    }
    /// The paper's constants.
    pub fn paper() -> Self {
        Self::Paper { lambda1: 1.0, lambda2: 8.0 }
    }
}

/// The original FFN output weights of every layer a change touched. `undo` puts the very same
/// tensors back, so the model is restored bit for bit; dropping it keeps the change.
#[must_use = "a weight change is kept unless undone; call `keep()` to say so"]
#[derive(Debug)]
pub struct WeightUndo<B: Backend> {
    saved: Vec<(usize, Tensor<B, 2>)>,
}

impl<B: Backend> WeightUndo<B> {
    /// Restores the original weights.
    pub fn undo<M: KnowledgeModel<B>>(self, model: &mut M) {
        for (layer, w) in self.saved {
            model.set_ffn_out_weight(layer, w);
        }
    }

    /// Keeps the change (for further experiments).
    pub fn keep(self) {}

    /// Layers changed.
    pub fn layers(&self) -> Vec<usize> {
        self.saved.iter().map(|(l, _)| *l).collect()
    }
}

/// Replaces each neuron's value vector (row of the FFN output weight) with `row(neuron, v)`.
fn rewrite_rows<B: Backend, M: KnowledgeModel<B>>(
    model: &mut M,
    neurons: &[NeuronId],
    mut row: impl FnMut(NeuronId, Tensor<B, 1>) -> Result<Tensor<B, 1>, KnError>,
) -> Result<WeightUndo<B>, KnError> {
    let dims = model.dims();
    check_neurons(neurons, &dims)?;
    let mut layers: Vec<usize> = neurons.iter().map(|n| n.layer).collect();
    layers.sort_unstable();
    layers.dedup();
    let mut saved = Vec::with_capacity(layers.len());
    for layer in layers {
        let original = model.ffn_out_weight(layer);
        let mut w = original.clone();
        let d = dims.d_model;
        for n in neurons.iter().filter(|n| n.layer == layer) {
            let i = n.index;
            let v = w.clone().slice([i..i + 1, 0..d]).reshape([d]);
            let new = row(*n, v)?;
            w = w.slice_assign([i..i + 1, 0..d], new.reshape([1, d]));
        }
        model.set_ffn_out_weight(layer, w);
        saved.push((layer, original));
    }
    Ok(WeightUndo { saved })
}

/// Erases the neurons' value vectors (EAI `erase_knowledge`).
pub fn erase<B: Backend, M: KnowledgeModel<B>>(
    model: &mut M,
    neurons: &[NeuronId],
    fill: Fill,
) -> Result<WeightUndo<B>, KnError> {
    let fill_row = match fill {
        Fill::Zero => None,
        Fill::Token(id) => Some(token_row(model, id)?),
    };
    rewrite_rows(model, neurons, |_, v| Ok(fill_row.clone().unwrap_or_else(|| v.zeros_like())))
}

/// Moves the neurons' value vectors from token `from` towards token `to` (EAI `edit_knowledge`,
/// for every architecture).
pub fn edit<B: Backend, M: KnowledgeModel<B>>(
    model: &mut M,
    neurons: &[NeuronId],
    from: u32,
    to: u32,
    rule: EditRule,
) -> Result<WeightUndo<B>, KnError> {
    let e_old = token_row(model, from)?;
    let e_new = token_row(model, to)?;
    let norm = |t: &Tensor<B, 1>| -> Result<f32, KnError> { Ok(to_vec(t.clone().powi_scalar(2).sum())?[0].sqrt()) };
    let (n_old, n_new) = (norm(&e_old)?, norm(&e_new)?);
    rewrite_rows(model, neurons, |_, v| match rule {
        EditRule::Eai { lambda } => Ok(v - e_old.clone() * lambda + e_new.clone() * lambda),
        EditRule::Paper { lambda1, lambda2 } => {
            let nv = norm(&v)?;
            Ok(v - e_old.clone() * (lambda1 * nv / n_old) + e_new.clone() * (lambda2 * nv / n_new))
        }
    })
}

fn token_row<B: Backend, M: KnowledgeModel<B>>(model: &M, id: u32) -> Result<Tensor<B, 1>, KnError> {
    let vocab = model.dims().vocab_size;
    if id as usize >= vocab {
        return Err(KnError::TokenOutOfRange { id, vocab });
    }
    Ok(model.token_embedding(id))
}
