//! Weight interventions on the FFN output vectors (erase, edit), with an undo that restores the
//! weights bit-exactly.

use burn::tensor::{backend::Backend, Tensor};
use serde::{Deserialize, Serialize};

use crate::intervene::check_neurons;
use crate::predict::to_vec;
use crate::{forward_hooked, Capture, KnError, KnowledgeModel, ModelInput, NeuronId, Query};

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
    // A neuron listed twice is changed once (as suppress / enhance scale it once).
    let mut unique: Vec<NeuronId> = neurons.to_vec();
    unique.sort_unstable();
    unique.dedup();
    let neurons = unique.as_slice();
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
/// the paper's rule), for neurons whose activation is positive where the edit should act: the
/// change to the residual stream is the activation times the change to the value vector. For
/// neurons that may fire negatively (a gated FFN's `act(gate) ⊙ up` is signed: in SmolLM2 most
/// of the knowledge neurons of a fact are negative), use [`edit_for`].
pub fn edit<B: Backend, M: KnowledgeModel<B>>(
    model: &mut M,
    neurons: &[NeuronId],
    from: u32,
    to: u32,
    rule: EditRule,
) -> Result<WeightUndo<B>, KnError> {
    edit_signed(model, neurons, &vec![1.0; neurons.len()], from, to, rule)
}

/// [`edit`] for the prediction of `query`: each value vector moves in the direction that,
/// multiplied by the neuron's activation at the query's (first) target position, takes the
/// residual stream from `from` towards `to` — the rule of the paper and of the Python library
/// for positive activations (GELU neurons, BERT), and the same rule for negative ones (SwiGLU),
/// where applying it unsigned would push the old answer up and the new one down.
pub fn edit_for<B: Backend, M: KnowledgeModel<B>>(
    model: &mut M,
    query: &Query,
    neurons: &[NeuronId],
    from: u32,
    to: u32,
    rule: EditRule,
) -> Result<WeightUndo<B>, KnError> {
    let signs = activation_signs(model, query, neurons)?;
    edit_signed(model, neurons, &signs, from, to, rule)
}

/// The sign (±1; +1 for 0) of each neuron's activation at `query`'s first target position.
pub fn activation_signs<B: Backend, M: KnowledgeModel<B>>(
    model: &M,
    query: &Query,
    neurons: &[NeuronId],
) -> Result<Vec<f32>, KnError> {
    let dims = model.dims();
    check_neurons(neurons, &dims)?;
    query.check(&dims)?;
    let mut cap = Capture::default();
    forward_hooked(model, &ModelInput::from_ids(&query.ids, &model.device()), &mut cap);
    let pos = query.positions[0];
    let mut rows: Vec<Option<Vec<f32>>> = vec![None; dims.n_layers];
    neurons
        .iter()
        .map(|n| {
            if rows[n.layer].is_none() {
                let act = cap.acts.get(n.layer).ok_or(KnError::Empty { what: "captured activations" })?;
                rows[n.layer] = Some(to_vec(act.clone().slice([0..1, pos..pos + 1, 0..dims.d_ff]))?);
            }
            let a = rows[n.layer].as_ref().map_or(0.0, |r| r[n.index]);
            Ok(if a < 0.0 { -1.0 } else { 1.0 })
        })
        .collect()
}

/// [`edit`] with the direction of neuron `k` multiplied by `signs[k]` (from
/// [`activation_signs`]).
pub fn edit_signed<B: Backend, M: KnowledgeModel<B>>(
    model: &mut M,
    neurons: &[NeuronId],
    signs: &[f32],
    from: u32,
    to: u32,
    rule: EditRule,
) -> Result<WeightUndo<B>, KnError> {
    let e_old = token_row(model, from)?;
    let e_new = token_row(model, to)?;
    let norm = |t: &Tensor<B, 1>| -> Result<f32, KnError> { Ok(to_vec(t.clone().powi_scalar(2).sum())?[0].sqrt()) };
    let (n_old, n_new) = (norm(&e_old)?, norm(&e_new)?);
    let sign_of = |n: NeuronId| neurons.iter().position(|m| *m == n).and_then(|k| signs.get(k)).copied().unwrap_or(1.0);
    rewrite_rows(model, neurons, |n, v| {
        let s = sign_of(n);
        match rule {
            EditRule::Eai { lambda } => Ok(v - e_old.clone() * (s * lambda) + e_new.clone() * (s * lambda)),
            EditRule::Paper { lambda1, lambda2 } => {
                let nv = norm(&v)?;
                Ok(v - e_old.clone() * (s * lambda1 * nv / n_old) + e_new.clone() * (s * lambda2 * nv / n_new))
            }
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
