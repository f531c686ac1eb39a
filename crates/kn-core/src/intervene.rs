//! Activation interventions (suppress, enhance) and measuring their effect on a prediction.

use burn::tensor::{backend::Backend, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::predict::to_vec;
use crate::{
    forward_hooked, FfnHook, KnError, KnowledgeModel, ModelDims, ModelInput, NeuronId, NoHook, Objective, Query,
};

/// Which sequence positions an activation patch touches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// These positions (the `[MASK]`s of a masked LM): the Python library's behaviour.
    Positions(Vec<usize>),
    /// The last position of whatever sequence runs (causal LMs, also while generating).
    Last,
    /// Every position.
    All,
}

/// Multiplies chosen neurons' activations by `factor` (0 suppresses, 2 enhances).
#[derive(Debug, Clone)]
pub struct ScaleNeurons {
    by_layer: Vec<Vec<usize>>,
    /// Multiplier.
    pub factor: f32,
    /// Positions touched.
    pub scope: Scope,
}

impl ScaleNeurons {
    /// A patch of `neurons` (checked against `dims`).
    pub fn new(neurons: &[NeuronId], dims: &ModelDims, factor: f32, scope: Scope) -> Result<Self, KnError> {
        check_neurons(neurons, dims)?;
        let mut by_layer = vec![Vec::new(); dims.n_layers];
        for n in neurons {
            by_layer[n.layer].push(n.index);
        }
        Ok(Self { by_layer, factor, scope })
    }
}

impl<B: Backend> FfnHook<B> for ScaleNeurons {
    fn on_ffn(&mut self, layer: usize, act: Tensor<B, 3>) -> Tensor<B, 3> {
        let idx = match self.by_layer.get(layer) {
            Some(idx) if !idx.is_empty() => idx,
            _ => return act,
        };
        let [_, s, d_ff] = act.dims();
        let positions: Vec<usize> = match &self.scope {
            Scope::Positions(p) => p.iter().copied().filter(|&p| p < s).collect(),
            Scope::Last => vec![s - 1],
            Scope::All => (0..s).collect(),
        };
        let mut mult = vec![1.0f32; s * d_ff];
        for &p in &positions {
            for &i in idx {
                mult[p * d_ff + i] = self.factor;
            }
        }
        let mult = Tensor::<B, 3>::from_data(TensorData::new(mult, [1, s, d_ff]), &act.device());
        act * mult
    }
}

/// Fails on any neuron outside the model.
pub fn check_neurons(neurons: &[NeuronId], dims: &ModelDims) -> Result<(), KnError> {
    match neurons.iter().find(|n| n.layer >= dims.n_layers || n.index >= dims.d_ff) {
        Some(&neuron) => Err(KnError::NeuronOutOfRange { neuron, n_layers: dims.n_layers, d_ff: dims.d_ff }),
        None => Ok(()),
    }
}

/// What the model predicts for a query set (the Python library's result keys).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// Probability of the target (joint over pieces / teacher-forced tokens).
    pub gt_prob: f32,
    /// The greedy completion's ids (one per target piece / token).
    pub argmax_ids: Vec<u32>,
    /// Its probability (product over pieces / tokens).
    pub argmax_prob: f32,
}

/// Before and after an intervention.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Effect {
    /// Unmodified model.
    pub before: Outcome,
    /// Modified model.
    pub after: Outcome,
}

impl Effect {
    /// Relative change of the target probability, `(after − before) / before`.
    pub fn relative_change(&self) -> f32 {
        (self.after.gt_prob - self.before.gt_prob) / self.before.gt_prob
    }
}

/// Runs `queries` (from [`Query::for_target`]) with `hook` in place.
///
/// Masked LM: one query, probabilities and argmax at its mask positions. Causal LM: the target
/// probability is teacher-forced over the target tokens; the argmax completion is generated
/// greedily for as many tokens.
pub fn measure<B: Backend, M: KnowledgeModel<B>>(
    model: &M,
    queries: &[Query],
    hook: &mut dyn FfnHook<B>,
) -> Result<Outcome, KnError> {
    let first = queries.first().ok_or(KnError::Empty { what: "queries" })?;
    let mut gt_prob = 1.0f32;
    for q in queries {
        for (row, &t) in probs_rows(model, &q.ids, &q.positions, hook)?.iter().zip(&q.target_ids) {
            gt_prob *= row[t as usize];
        }
    }
    let (mut argmax_ids, mut argmax_prob) = (Vec::new(), 1.0f32);
    match model.objective() {
        Objective::MaskedLm => {
            for row in probs_rows(model, &first.ids, &first.positions, hook)? {
                let (id, p) = argmax(&row);
                argmax_ids.push(id);
                argmax_prob *= p;
            }
        }
        Objective::CausalLm => {
            let mut ids = first.ids.clone();
            for _ in 0..queries.len() {
                let rows = probs_rows(model, &ids, &[ids.len() - 1], hook)?;
                let (id, p) = argmax(&rows[0]);
                argmax_ids.push(id);
                argmax_prob *= p;
                ids.push(id);
            }
        }
    }
    Ok(Outcome { gt_prob, argmax_ids, argmax_prob })
}

/// Before/after of an activation patch.
pub fn patch_effect<B: Backend, M: KnowledgeModel<B>>(
    model: &M,
    queries: &[Query],
    patch: &mut ScaleNeurons,
) -> Result<Effect, KnError> {
    Ok(Effect { before: measure(model, queries, &mut NoHook)?, after: measure(model, queries, patch)? })
}

/// The scope that patches "the target position" for this model's objective.
pub fn target_scope(objective: Objective, queries: &[Query]) -> Scope {
    match objective {
        Objective::MaskedLm => Scope::Positions(queries.first().map(|q| q.positions.clone()).unwrap_or_default()),
        Objective::CausalLm => Scope::Last,
    }
}

/// Sets the chosen activations to 0 at the target position(s).
pub fn suppress<B: Backend, M: KnowledgeModel<B>>(
    model: &M,
    queries: &[Query],
    neurons: &[NeuronId],
) -> Result<Effect, KnError> {
    let mut p = ScaleNeurons::new(neurons, &model.dims(), 0.0, target_scope(model.objective(), queries))?;
    patch_effect(model, queries, &mut p)
}

/// Multiplies the chosen activations by `factor` (EAI: 2) at the target position(s).
pub fn enhance<B: Backend, M: KnowledgeModel<B>>(
    model: &M,
    queries: &[Query],
    neurons: &[NeuronId],
    factor: f32,
) -> Result<Effect, KnError> {
    let mut p = ScaleNeurons::new(neurons, &model.dims(), factor, target_scope(model.objective(), queries))?;
    patch_effect(model, queries, &mut p)
}

/// Softmax rows at `positions` of one sequence, on the host.
fn probs_rows<B: Backend, M: KnowledgeModel<B>>(
    model: &M,
    ids: &[u32],
    positions: &[usize],
    hook: &mut dyn FfnHook<B>,
) -> Result<Vec<Vec<f32>>, KnError> {
    let input = ModelInput::from_ids(ids, &model.device());
    let logits = forward_hooked(model, &input, hook);
    let [_, s, v] = logits.dims();
    let mut out = Vec::with_capacity(positions.len());
    for &p in positions {
        if p >= s {
            return Err(KnError::PositionOutOfRange { pos: p, seq_len: s });
        }
        let row = crate::predict::log_softmax(logits.clone().slice([0..1, p..p + 1, 0..v]).reshape([v])).exp();
        out.push(to_vec(row)?);
    }
    Ok(out)
}

fn argmax(row: &[f32]) -> (u32, f32) {
    let (i, &p) = row.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1).then(b.0.cmp(&a.0))).unwrap_or((0, &0.0));
    (i as u32, p)
}
