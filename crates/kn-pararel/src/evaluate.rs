//! One fact, end to end: refined neurons, then suppression and enhancement on its own prompts
//! (related) and on another fact's prompts (unrelated), and the activation baseline.

use anyhow::Result;
use burn::tensor::backend::AutodiffBackend;
use kn_core::intervene::target_scope;
use kn_core::{
    attribute_many, coarse, measure, measure_batch, refine, Attribution, AttributionConfig, KnowledgeModel, Method,
    NeuronId, NoHook, Outcome, Query, ScaleNeurons, Sharing, Threshold,
};
use serde::{Deserialize, Serialize};

use crate::dataset::Fact;
use crate::encode::Encoder;

/// Settings of a run (defaults: EleutherAI's `pararel_evaluate.py`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EvalConfig {
    /// Attribution.
    pub attribution: AttributionConfig,
    /// Coarse threshold (adaptive 0.3).
    pub threshold: Threshold,
    /// Sharing (p = 0.3).
    pub sharing: Sharing,
    /// Enhancement factor (2).
    pub enhance: f32,
    /// Seed of the unrelated-fact choice (42).
    pub seed: u64,
    /// Skip objects of several tokens (else one [MASK] per piece / teacher forcing).
    pub skip_multi_token: bool,
    /// Unrelated fact from any other fact (EAI) instead of a different relation (paper).
    pub unrelated_any: bool,
}

impl Default for EvalConfig {
    fn default() -> Self {
        Self {
            attribution: AttributionConfig { steps: 20, batch_size: 20, ..Default::default() },
            threshold: Threshold::Adaptive(0.3),
            sharing: Sharing::Fixed(0.3),
            enhance: 2.0,
            seed: 42,
            skip_multi_token: true,
            unrelated_any: false,
        }
    }
}

impl EvalConfig {
    /// The paper's settings: threshold 0.2 × max, adaptive sharing, left Riemann sum.
    pub fn paper() -> Self {
        let mut c = Self::default();
        c.threshold = Threshold::Adaptive(0.2);
        c.sharing = Sharing::paper();
        c.attribution.quadrature = kn_core::Quadrature::Left;
        c
    }
}

/// Per-prompt effect of an intervention (the Python library's keys, plus probabilities).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// `100 · (after − before) / before` per prompt.
    pub pct_change: Vec<f32>,
    /// Target probability before.
    pub prob_before: Vec<f32>,
    /// After.
    pub prob_after: Vec<f32>,
    /// Argmax was the target, before.
    pub correct_before: Vec<bool>,
    /// After.
    pub correct_after: Vec<bool>,
    /// Number of prompts.
    pub n_prompts: usize,
}

/// Related and unrelated effects of one intervention.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Pair {
    /// On the fact's own prompts.
    pub related: Stats,
    /// On the unrelated fact's prompts.
    pub unrelated: Stats,
}

/// The record written per fact (one JSONL line).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FactResult {
    /// Fact id.
    pub uuid: String,
    /// Relation.
    pub relation_name: String,
    /// Object.
    pub obj_label: String,
    /// Why the fact was not evaluated (multi-token object, encoding error), if so.
    pub skipped: Option<String>,
    /// Object token count.
    pub n_object_tokens: usize,
    /// Refined neurons.
    pub neurons: Vec<NeuronId>,
    /// Sharing ratio used.
    pub p: f32,
    /// The unrelated fact.
    pub unrelated_uuid: Option<String>,
    /// Suppression (factor 0).
    pub suppression: Pair,
    /// Enhancement.
    pub enhancement: Pair,
    /// Baseline: as many neurons, chosen by activation instead of attribution.
    pub baseline_neurons: Vec<NeuronId>,
    /// Baseline suppression.
    pub baseline_suppression: Pair,
    /// Baseline enhancement.
    pub baseline_enhancement: Pair,
}

impl FactResult {
    /// A record for a fact that was not evaluated.
    pub fn skipped(uuid: &str, fact: &Fact, why: String, n_tokens: usize) -> Self {
        Self {
            uuid: uuid.into(),
            relation_name: fact.relation_name.clone(),
            obj_label: fact.obj_label.clone(),
            skipped: Some(why),
            n_object_tokens: n_tokens,
            neurons: Vec::new(),
            p: 0.0,
            unrelated_uuid: None,
            suppression: Pair::default(),
            enhancement: Pair::default(),
            baseline_neurons: Vec::new(),
            baseline_suppression: Pair::default(),
            baseline_enhancement: Pair::default(),
        }
    }
}

/// The number of tokens of `fact`'s object, or why the fact cannot be evaluated (no prompts, an
/// object that cannot be encoded, a multi-token object skipped by `cfg`) with that number.
/// Facts that cannot be evaluated are skipped and never serve as another fact's control.
pub fn usable(enc: &dyn Encoder, fact: &Fact, cfg: &EvalConfig) -> Result<usize, (String, usize)> {
    let Some(first) = fact.sentences.first() else {
        return Err(("the fact has no prompts".into(), 0));
    };
    let n = enc.object_ids(first, &fact.obj_label).map(|v| v.len()).unwrap_or(0);
    if n == 0 {
        return Err((format!("object {:?} cannot be encoded", fact.obj_label), 0));
    }
    if n > 1 && cfg.skip_multi_token {
        return Err((format!("object {:?} is {n} tokens", fact.obj_label), n));
    }
    Ok(n)
}

/// One fact to evaluate: its id, record and unrelated fact (id and record).
#[derive(Debug, Clone, Copy)]
pub struct Item<'a> {
    /// The fact's id.
    pub uuid: &'a str,
    /// The fact.
    pub fact: &'a Fact,
    /// The other fact whose prompts measure what an intervention does elsewhere.
    pub unrelated: Option<(&'a str, &'a Fact)>,
}

/// Evaluates one fact; `unrelated` is the other fact (id and record).
pub fn evaluate<B: AutodiffBackend, M: KnowledgeModel<B>>(
    model: &M,
    enc: &dyn Encoder,
    uuid: &str,
    fact: &Fact,
    unrelated: Option<(&str, &Fact)>,
    cfg: &EvalConfig,
) -> Result<FactResult> {
    let mut one = evaluate_many(model, enc, &[Item { uuid, fact, unrelated }], cfg)?;
    one.pop().ok_or_else(|| anyhow::anyhow!("no result for fact {uuid}"))
}

/// Evaluates several facts, one record each in order: the attributions of all their prompts
/// run in one schedule ([`attribute_many`]: on a CPU the passes share the cores to the end; with
/// `cfg.attribution.max_stacked_prompts` > 1, prompts of one length from different facts run
/// as one batch, which is what fills a GPU). Each record equals what [`evaluate`] gives the fact
/// alone (bit for bit unless prompts are stacked; within float rounding then).
pub fn evaluate_many<B: AutodiffBackend, M: KnowledgeModel<B>>(
    model: &M,
    enc: &dyn Encoder,
    items: &[Item],
    cfg: &EvalConfig,
) -> Result<Vec<FactResult>> {
    // Each fact's prompts, or the record of why it is skipped.
    let prepared: Vec<Prompts> = items
        .iter()
        .map(|it| {
            let skip = |why: String, n: usize| Box::new(FactResult::skipped(it.uuid, it.fact, why, n));
            let n_tokens = usable(enc, it.fact, cfg).map_err(|(why, n)| skip(why, n))?;
            let related: Vec<Vec<Query>> = it
                .fact
                .sentences
                .iter()
                .map(|s| enc.queries(s, &it.fact.obj_label))
                .collect::<Result<_>>()
                .map_err(|e| skip(format!("{e:#}"), n_tokens))?;
            Ok((n_tokens, related))
        })
        .collect();
    // Every related prompt of every fact in one schedule (their passes share the cores).
    let all: Vec<&[Query]> =
        prepared.iter().flatten().flat_map(|(_, related)| related.iter().map(Vec::as_slice)).collect();
    let act_cfg = AttributionConfig { method: Method::MaxActivations, ..cfg.attribution };
    let (mut attrs, mut acts) = if all.is_empty() {
        (Vec::new().into_iter(), Vec::new().into_iter())
    } else {
        (attribute_many(model, &all, &cfg.attribution)?.into_iter(), attribute_many(model, &all, &act_cfg)?.into_iter())
    };
    let mut out = Vec::with_capacity(items.len());
    for (it, prep) in items.iter().zip(prepared) {
        let (n_tokens, related) = match prep {
            Ok(p) => p,
            Err(skipped) => {
                out.push(*skipped);
                continue;
            }
        };
        let n = related.len();
        let attr: Vec<Attribution> = attrs.by_ref().take(n).collect();
        let act: Vec<Attribution> = acts.by_ref().take(n).collect();
        out.push(finish_fact(model, enc, it, n_tokens, related, &attr, &act, cfg)?);
    }
    Ok(out)
}

/// A fact's object length in tokens and its prompts' queries, or the record of why it is skipped.
type Prompts = std::result::Result<(usize, Vec<Vec<Query>>), Box<FactResult>>;

/// One fact's record from its prompts' attributions (`attrs`) and activations (`acts`):
/// refined neurons, the activation baseline, and the four interventions measured.
#[allow(clippy::too_many_arguments)]
fn finish_fact<B: AutodiffBackend, M: KnowledgeModel<B>>(
    model: &M,
    enc: &dyn Encoder,
    it: &Item,
    n_tokens: usize,
    related: Vec<Vec<Query>>,
    attrs: &[Attribution],
    acts: &[Attribution],
    cfg: &EvalConfig,
) -> Result<FactResult> {
    let (uuid, fact, unrelated) = (it.uuid, it.fact, it.unrelated);
    let per_prompt = attrs.iter().map(|a| coarse(a, cfg.threshold)).collect::<Result<Vec<_>, _>>()?;
    let mut act_sum: Vec<Vec<f32>> = Vec::new();
    for a in acts {
        if act_sum.is_empty() {
            act_sum = a.scores.clone();
        } else {
            act_sum.iter_mut().zip(&a.scores).for_each(|(a, b)| a.iter_mut().zip(b).for_each(|(x, y)| *x += y));
        }
    }
    let refined = match refine(&per_prompt, cfg.sharing, &[], 0.0) {
        Ok(r) => r,
        Err(e) => return Ok(FactResult::skipped(uuid, fact, e.to_string(), n_tokens)),
    };
    let baseline = top_neurons(&act_sum, refined.neurons.len());
    let unrel: Vec<Vec<Query>> = match unrelated {
        Some((_, f)) => f.sentences.iter().filter_map(|s| enc.queries(s, &f.obj_label).ok()).collect(),
        None => Vec::new(),
    };
    // The unpatched outcomes once per prompt, shared by the four interventions.
    let (rel_before, unrel_before) = (outcomes(model, &related, None)?, outcomes(model, &unrel, None)?);
    let pair = |neurons: &[NeuronId], factor: f32| -> Result<Pair> {
        Ok(Pair {
            related: stats(&related, &rel_before, &outcomes(model, &related, Some((neurons, factor)))?),
            unrelated: stats(&unrel, &unrel_before, &outcomes(model, &unrel, Some((neurons, factor)))?),
        })
    };
    let related_only = |neurons: &[NeuronId], factor: f32| -> Result<Pair> {
        Ok(Pair {
            related: stats(&related, &rel_before, &outcomes(model, &related, Some((neurons, factor)))?),
            unrelated: Stats::default(),
        })
    };
    Ok(FactResult {
        uuid: uuid.into(),
        relation_name: fact.relation_name.clone(),
        obj_label: fact.obj_label.clone(),
        skipped: None,
        n_object_tokens: n_tokens,
        suppression: pair(&refined.neurons, 0.0)?,
        enhancement: pair(&refined.neurons, cfg.enhance)?,
        baseline_suppression: related_only(&baseline, 0.0)?,
        baseline_enhancement: related_only(&baseline, cfg.enhance)?,
        neurons: refined.neurons,
        p: refined.p,
        baseline_neurons: baseline,
        unrelated_uuid: unrelated.map(|(u, _)| u.to_string()),
    })
}

/// The `k` neurons with the largest summed activation.
fn top_neurons(scores: &[Vec<f32>], k: usize) -> Vec<NeuronId> {
    let mut all: Vec<(NeuronId, f32)> = scores
        .iter()
        .enumerate()
        .flat_map(|(l, r)| r.iter().enumerate().map(move |(i, &s)| (NeuronId::new(l, i), s)))
        .collect();
    all.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut top: Vec<NeuronId> = all.into_iter().take(k).map(|(n, _)| n).collect();
    top.sort();
    top
}

/// What the model predicts for each prompt, with `patch` (neurons scaled by a factor at the
/// target position) if given: one padded batch pass when every prompt is one one-token query
/// (the usual case: single-token objects), else one [`measure`] per prompt.
fn outcomes<B: AutodiffBackend, M: KnowledgeModel<B>>(
    model: &M,
    prompts: &[Vec<Query>],
    patch: Option<(&[NeuronId], f32)>,
) -> Result<Vec<Outcome>> {
    let single: Option<Vec<&Query>> = prompts
        .iter()
        .map(|q| match q.as_slice() {
            [one] if one.positions.len() == 1 && one.target_ids.len() == 1 => Some(one),
            _ => None,
        })
        .collect();
    if let Some(single) = single {
        return Ok(measure_batch(model, &single, patch)?);
    }
    prompts
        .iter()
        .map(|q| match patch {
            Some((neurons, factor)) => {
                let mut p = ScaleNeurons::new(neurons, &model.dims(), factor, target_scope(model.objective(), q))?;
                Ok(measure(model, q, &mut p)?)
            }
            None => Ok(measure(model, q, &mut NoHook)?),
        })
        .collect()
}

/// Per-prompt effect, from the outcomes before and after an intervention.
fn stats(prompts: &[Vec<Query>], before: &[Outcome], after: &[Outcome]) -> Stats {
    let mut s = Stats::default();
    for ((q, b), a) in prompts.iter().zip(before).zip(after) {
        let target: Vec<u32> = q.iter().flat_map(|x| x.target_ids.iter().copied()).collect();
        s.pct_change.push(100.0 * (a.gt_prob - b.gt_prob) / b.gt_prob);
        s.prob_before.push(b.gt_prob);
        s.prob_after.push(a.gt_prob);
        s.correct_before.push(b.argmax_ids == target);
        s.correct_after.push(a.argmax_ids == target);
    }
    s.n_prompts = prompts.len();
    s
}
