//! Activation interventions (suppress, enhance) and measuring their effect on a prediction.

use burn::tensor::{backend::Backend, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::predict::to_vec;
use crate::{FfnHook, KnError, KnowledgeModel, ModelDims, ModelInput, NeuronId, NoHook, Objective, Query};

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
    /// Per sequence of a padded batch, its own positions (row `r` of the batch touches
    /// `rows[r]`): the target positions of several prompts measured in one pass.
    Rows(Vec<Vec<usize>>),
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
        let [b, s, d_ff] = act.dims();
        let rows: Vec<Vec<usize>> = match &self.scope {
            Scope::Positions(p) => vec![p.clone()],
            Scope::Last => vec![vec![s - 1]],
            Scope::All => vec![(0..s).collect()],
            // A batch row without its own entry is left alone.
            Scope::Rows(r) => (0..b).map(|k| r.get(k).cloned().unwrap_or_default()).collect(),
        };
        let mut mult = vec![1.0f32; rows.len() * s * d_ff];
        for (r, positions) in rows.iter().enumerate() {
            for &p in positions.iter().filter(|&&p| p < s) {
                for &i in idx {
                    mult[(r * s + p) * d_ff + i] = self.factor;
                }
            }
        }
        let mult = Tensor::<B, 3>::from_data(TensorData::new(mult, [rows.len(), s, d_ff]), &act.device());
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
    let mut first_rows = Vec::new();
    for (k, q) in queries.iter().enumerate() {
        let rows = probs_rows(model, &q.ids, &q.positions, hook)?;
        for (row, &t) in rows.iter().zip(&q.target_ids) {
            gt_prob *= row.get(t as usize).copied().ok_or(KnError::TokenOutOfRange { id: t, vocab: row.len() })?;
        }
        if k == 0 {
            first_rows = rows;
        }
    }
    let (mut argmax_ids, mut argmax_prob) = (Vec::new(), 1.0f32);
    match model.objective() {
        Objective::MaskedLm => {
            // The first query's rows are the ones the argmax is read from.
            for row in &first_rows {
                let (id, p) = argmax(row);
                argmax_ids.push(id);
                argmax_prob *= p;
            }
        }
        Objective::CausalLm => {
            let mut ids = first.ids.clone();
            for step in 0..queries.len() {
                // The first greedy step reads the first query's row when it is the last position.
                let reuse = step == 0 && first.positions == [ids.len() - 1] && first_rows.len() == 1;
                let rows = if reuse {
                    std::mem::take(&mut first_rows)
                } else {
                    probs_rows(model, &ids, &[ids.len() - 1], hook)?
                };
                let (id, p) = argmax(&rows[0]);
                argmax_ids.push(id);
                argmax_prob *= p;
                ids.push(id);
            }
        }
    }
    Ok(Outcome { gt_prob, argmax_ids, argmax_prob })
}

/// [`measure`] for several one-token queries (one position, one target id each) in one
/// right-padded batch pass: `queries[k]` reads its target at its own position, and `neurons`
/// (if any) are scaled by `factor` at that position only, as [`target_scope`] does for one
/// query (a causal query's position is its last). Padding is masked out of attention, so
/// each outcome equals [`measure`]'s on its own query up to float rounding.
pub fn measure_batch<B: Backend, M: KnowledgeModel<B>>(
    model: &M,
    queries: &[&Query],
    patch: Option<(&[NeuronId], f32)>,
) -> Result<Vec<Outcome>, KnError> {
    Ok(queries
        .iter()
        .zip(probs_batch(model, queries, patch)?)
        .map(|(q, row)| {
            let (id, p) = argmax(&row);
            Outcome { gt_prob: row[q.target_ids[0] as usize], argmax_ids: vec![id], argmax_prob: p }
        })
        .collect())
}

/// The probability rows [`measure_batch`] reads its outcomes from: row `k` is the softmax at
/// `queries[k]`'s position.
///
/// # Shapes
/// - output: `queries.len()` rows of `vocab_size`
pub fn probs_batch<B: Backend, M: KnowledgeModel<B>>(
    model: &M,
    queries: &[&Query],
    patch: Option<(&[NeuronId], f32)>,
) -> Result<Vec<Vec<f32>>, KnError> {
    if queries.is_empty() {
        return Ok(Vec::new());
    }
    let dims = model.dims();
    let mut seqs = Vec::with_capacity(queries.len());
    let mut positions = Vec::with_capacity(queries.len());
    for q in queries {
        q.check(&dims)?;
        match (q.positions.as_slice(), q.target_ids.as_slice()) {
            ([p], [_]) => positions.push(*p),
            _ => {
                return Err(KnError::InvalidSetting(format!(
                    "measure_batch takes one-token queries; this one has {} positions and {} target ids",
                    q.positions.len(),
                    q.target_ids.len()
                )))
            }
        }
        seqs.push(q.ids.clone());
    }
    let input = ModelInput::from_batch(&seqs, 0, &model.device());
    let mut hook: Box<dyn FfnHook<B>> = match patch {
        Some((neurons, factor)) => Box::new(ScaleNeurons::new(
            neurons,
            &dims,
            factor,
            Scope::Rows(positions.iter().map(|&p| vec![p]).collect()),
        )?),
        None => Box::new(NoHook),
    };
    let resid = crate::model::run_layers(model, model.embed(&input), &input, 0, hook.as_mut());
    let d = dims.d_model;
    let rows: Vec<Tensor<B, 3>> =
        positions.iter().enumerate().map(|(r, &p)| resid.clone().slice([r..r + 1, p..p + 1, 0..d])).collect();
    let n = rows.len();
    let logits = model.logits(Tensor::cat(rows, 0));
    let v = dims.vocab_size;
    let probs = to_vec(crate::predict::log_softmax(logits.reshape([n, v])).exp())?;
    Ok(probs.chunks(v).map(<[f32]>::to_vec).collect())
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
    let s = ids.len();
    if let Some(&p) = positions.iter().find(|&&p| p >= s) {
        return Err(KnError::PositionOutOfRange { pos: p, seq_len: s });
    }
    let resid = crate::model::run_layers(model, model.embed(&input), &input, 0, hook);
    // The head only at the positions read (a causal prompt of 10 tokens would otherwise pay
    // for 10 rows of a 50k-token vocabulary to read one).
    let logits = model.logits(crate::model::gather_rows(resid, positions));
    let v = model.dims().vocab_size;
    let probs = to_vec(crate::predict::log_softmax(logits.reshape([positions.len(), v])).exp())?;
    Ok(probs.chunks(v).map(<[f32]>::to_vec).collect())
}

fn argmax(row: &[f32]) -> (u32, f32) {
    let (i, &p) = row.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1).then(b.0.cmp(&a.0))).unwrap_or((0, &0.0));
    (i as u32, p)
}
