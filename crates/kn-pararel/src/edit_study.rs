//! The paper's first case study, updating facts (section 5.1; Dai et al.'s
//! `src/6_edit_knowledge_sampled.py`): for a fact the model answers correctly, move its refined
//! neurons' value vectors from the old object to a new object of the same relation, and measure
//! whether the answer changed and what else moved. One JSON line per fact, resumable.

use anyhow::Result;
use burn::tensor::backend::Backend;
use kn_core::{edit_for, EditRule, KnowledgeModel, NeuronId};
use kn_progress::{Bar, Mode};
use serde::{Deserialize, Serialize};

use crate::dataset::Dataset;
use crate::encode::Encoder;
use crate::evaluate::FactResult;
use crate::results::{JsonlFile, Record};
use crate::study::{self, Quality, Scored};

/// Settings of the study.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EditConfig {
    /// Facts edited per relation (sampled; `None`: all the run evaluated).
    pub per_relation: Option<usize>,
    /// Seed of every pick (facts, prompt, new object, context facts).
    pub seed: u64,
    /// The edit (the paper's: λ1 = 1, λ2 = 8, norm-scaled), signed by each neuron's activation.
    pub rule: EditRule,
    /// Neurons refined for more than this share of the relation's facts are not edited (0.1).
    pub common_share: f64,
    /// Other facts of the same relation, and of other relations, whose log-perplexity is measured (5).
    pub context: usize,
    /// Words not counted above the object ([`crate::study::score`]); none in the paper.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_before: Vec<String>,
}

impl Default for EditConfig {
    fn default() -> Self {
        Self {
            per_relation: None,
            seed: 0,
            rule: EditRule::paper(),
            common_share: 0.1,
            context: 5,
            allow_before: Vec::new(),
        }
    }
}

/// The target before or after the edit.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EditSide {
    /// The old object on the prompt.
    pub old: Scored,
    /// The new object on the prompt.
    pub new: Scored,
    /// Other facts of the relation (all their prompts).
    pub intra: Quality,
    /// Facts of other relations.
    pub inter: Quality,
}

/// One edited fact (one line of `edits.jsonl`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EditRecord {
    /// Fact id.
    pub uuid: String,
    /// Relation.
    pub relation_name: String,
    /// Old object.
    pub obj_label: String,
    /// Why the fact was not edited (answered wrongly, no neuron left, no new object), if so.
    pub skipped: Option<String>,
    /// The prompt edited and measured.
    pub prompt: String,
    /// The new object.
    pub new_label: String,
    /// Neurons edited (the refined ones minus the relation's common ones).
    pub neurons: Vec<NeuronId>,
    /// Refined neurons left out as common to the relation.
    pub dropped_common: Vec<NeuronId>,
    /// Before the edit.
    pub before: Option<EditSide>,
    /// After it.
    pub after: Option<EditSide>,
    /// The undo restored the edited layers bit for bit.
    pub restored: bool,
}

impl Record for EditRecord {
    fn key(&self) -> &str {
        &self.uuid
    }
}

impl EditRecord {
    fn skipped(r: &FactResult, why: String) -> Self {
        Self {
            uuid: r.uuid.clone(),
            relation_name: r.relation_name.clone(),
            obj_label: r.obj_label.clone(),
            skipped: Some(why),
            prompt: String::new(),
            new_label: String::new(),
            neurons: Vec::new(),
            dropped_common: Vec::new(),
            before: None,
            after: None,
            restored: true,
        }
    }

    /// The new object became the argmax.
    pub fn success(&self) -> Option<bool> {
        Some(self.after?.new.rank == 0)
    }
}

/// Runs the study over a run's `results` (with the fact set `data` it was made from) into
/// `dir/edits.jsonl`, resuming what it holds. Returns (edited now, already there).
pub fn run<B: Backend, M: KnowledgeModel<B>>(
    model: &mut M,
    enc: &dyn Encoder,
    data: &Dataset,
    results: &[FactResult],
    cfg: &EditConfig,
    dir: &std::path::Path,
    quiet: bool,
) -> Result<(usize, usize)> {
    let groups = study::by_relation(results);
    let mut out: JsonlFile<EditRecord> = JsonlFile::open(&dir.join("edits.jsonl"))?;
    let mut plan: Vec<(&FactResult, &Vec<&FactResult>)> = Vec::new();
    for facts in groups.values() {
        let mut rng = study::rng_for(cfg.seed, &facts[0].relation_name);
        for f in study::pick(facts, cfg.per_relation.unwrap_or(usize::MAX), &mut rng) {
            plan.push((f, facts));
        }
    }
    let already = plan.iter().filter(|(f, _)| out.done.contains(&f.uuid)).count();
    let mut bar = Bar::new("edits".to_string(), plan.len() as u64, "facts", Mode::detect(quiet, 20));
    bar.skip(already as u64);
    let all: Vec<&FactResult> = groups.values().flatten().copied().collect();
    let allowed = study::allowed_ids(enc, data, &cfg.allow_before)?;
    let mut done = 0;
    let todo: Vec<&(&FactResult, &Vec<&FactResult>)> =
        plan.iter().filter(|(f, _)| !out.done.contains(&f.uuid)).collect();
    for (fact, relation) in todo {
        let rec = edit_one(model, enc, data, fact, relation, &all, cfg, &allowed)?;
        out.append(rec)?;
        bar.inc(1);
        done += 1;
    }
    Ok((done, already))
}

/// One fact's record; `allowed` are the ids of `cfg.allow_before`.
#[allow(clippy::too_many_arguments)]
fn edit_one<B: Backend, M: KnowledgeModel<B>>(
    model: &mut M,
    enc: &dyn Encoder,
    data: &Dataset,
    fact: &FactResult,
    relation: &[&FactResult],
    all: &[&FactResult],
    cfg: &EditConfig,
    allowed: &[u32],
) -> Result<EditRecord> {
    let Some(f) = data.get(&fact.uuid) else {
        anyhow::bail!("fact {} of the run is not in the fact set (was the run made from another one?)", fact.uuid);
    };
    let mut rng = study::rng_for(cfg.seed, &fact.uuid);
    let Some(prompt) = study::pick(&f.sentences, 1, &mut rng).first().map(|s| (*s).clone()) else {
        return Ok(EditRecord::skipped(fact, "the fact has no prompts".into()));
    };
    let old_q = match study::one_token_query(enc, &prompt, &f.obj_label) {
        Ok(q) => q,
        Err(e) => return Ok(EditRecord::skipped(fact, format!("{e:#}"))),
    };
    // A new object: another object of the relation, one token after this prompt.
    let mut objects: Vec<&str> = relation
        .iter()
        .map(|r| r.obj_label.as_str())
        .filter(|o| *o != f.obj_label && study::one_token_query(enc, &prompt, o).is_ok())
        .collect();
    objects.sort_unstable();
    objects.dedup();
    let Some(new_label) = study::pick(&objects, 1, &mut rng).first().map(|s| (*s).to_string()) else {
        return Ok(EditRecord::skipped(fact, "no other one-token object in the relation".into()));
    };
    let new_q = study::one_token_query(enc, &prompt, &new_label)?;
    let common = study::common_neurons(relation, cfg.common_share);
    let (neurons, dropped): (Vec<NeuronId>, Vec<NeuronId>) = fact.neurons.iter().partition(|n| !common.contains(n));
    let mut rec = EditRecord {
        prompt: prompt.clone(),
        new_label,
        neurons: neurons.clone(),
        dropped_common: dropped,
        skipped: None,
        ..EditRecord::skipped(fact, String::new())
    };
    // Context: other facts of the relation, and facts of other relations.
    let intra: Vec<&FactResult> = relation.iter().copied().filter(|r| r.uuid != fact.uuid).collect();
    let inter: Vec<&FactResult> = all.iter().copied().filter(|r| r.relation_name != fact.relation_name).collect();
    let ctx = |set: &[&FactResult], rng: &mut kn_core::planted::Lcg| -> Result<Vec<kn_core::Query>> {
        let chosen: Vec<&FactResult> = study::pick(set, cfg.context, rng).into_iter().copied().collect();
        Ok(study::fact_queries(enc, &study::facts_of(data, &chosen)?))
    };
    let (intra_q, inter_q) = (ctx(&intra, &mut rng)?, ctx(&inter, &mut rng)?);
    let side = |model: &M| -> Result<EditSide> {
        let s = study::score(model, &[old_q.clone(), new_q.clone()], allowed)?;
        let (a, b) = (study::score(model, &intra_q, allowed)?, study::score(model, &inter_q, allowed)?);
        Ok(EditSide { old: s[0], new: s[1], intra: study::quality(&intra_q, &a), inter: study::quality(&inter_q, &b) })
    };
    let before = side(model)?;
    rec.before = Some(before);
    if before.old.rank != 0 {
        rec.skipped = Some(format!("the model does not answer {:?} on the prompt edited", f.obj_label));
        return Ok(rec);
    }
    if neurons.is_empty() {
        rec.skipped = Some("no refined neuron left after the relation filter".into());
        return Ok(rec);
    }
    let bits = study::bits_before_change(model, &neurons)?;
    let undo = edit_for(model, &old_q, &neurons, old_q.target_ids[0], new_q.target_ids[0], cfg.rule)?;
    let after = side(model);
    rec.restored = study::undo_restores(model, undo, &bits)?;
    rec.after = Some(after?);
    if !rec.restored {
        anyhow::bail!("undoing the edit of {} did not restore the weights bit for bit", fact.uuid);
    }
    Ok(rec)
}
