//! The paper's second case study, erasing a relation (section 5.2; Dai et al.'s
//! `src/7_erase_knowledge.py`): the most frequent refined neurons over a relation's facts get
//! their value vectors set to zero, and the accuracy and perplexity of that relation's facts are
//! compared with those of the other relations' facts, before and after. One JSON line per
//! relation, resumable.

use anyhow::{bail, Result};
use burn::tensor::backend::Backend;
use kn_core::{erase, Fill, KnowledgeModel, NeuronId};
use kn_progress::{Bar, Mode};
use serde::{Deserialize, Serialize};

use crate::dataset::Dataset;
use crate::encode::Encoder;
use crate::evaluate::FactResult;
use crate::results::{JsonlFile, Record};
use crate::study::{self, Quality};

/// Settings of the study.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EraseConfig {
    /// Relations erased (the paper: P19, P27, P106, P937).
    pub relations: Vec<String>,
    /// Neurons erased per relation: the most frequent refined ones (20).
    pub top: usize,
    /// Facts of other relations measured (sampled; `None`: all the run evaluated).
    pub others: Option<usize>,
    /// Seed of that sample.
    pub seed: u64,
    /// Relations of `relations` the run has no evaluated fact of are left out (else an error).
    #[serde(default)]
    pub skip_absent: bool,
    /// Words not counted above the object ([`crate::study::score`]); none in the paper.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_before: Vec<String>,
}

/// Before and after on one set of facts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct BeforeAfter {
    /// Unchanged model.
    pub before: Quality,
    /// Value vectors erased.
    pub after: Quality,
}

impl BeforeAfter {
    /// The paper's erased ratio `(acc − new_acc) / acc` (0 when `acc` is 0).
    pub fn erased_ratio(&self) -> f64 {
        if self.before.accuracy > 0.0 {
            (self.before.accuracy - self.after.accuracy) / self.before.accuracy
        } else {
            0.0
        }
    }
}

/// One erased relation (one line of `erase.jsonl`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EraseRecord {
    /// Relation.
    pub relation_name: String,
    /// Facts of the relation the run evaluated.
    pub facts: usize,
    /// Neurons erased with the number of the relation's facts that have each.
    pub neurons: Vec<(NeuronId, usize)>,
    /// The relation's facts (all prompts).
    pub related: BeforeAfter,
    /// Facts of the other relations.
    pub other: BeforeAfter,
    /// The undo restored the erased layers bit for bit.
    pub restored: bool,
}

impl Record for EraseRecord {
    fn key(&self) -> &str {
        &self.relation_name
    }
}

/// What [`run`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct EraseSummary {
    /// Relations erased now.
    pub erased: usize,
    /// Already in the file.
    pub resumed: usize,
    /// Asked for, but the run has no evaluated fact of them (with `skip_absent`).
    pub absent: Vec<String>,
}

/// Runs the study into `dir/erase.jsonl`, resuming what it holds.
pub fn run<B: Backend, M: KnowledgeModel<B>>(
    model: &mut M,
    enc: &dyn Encoder,
    data: &Dataset,
    results: &[FactResult],
    cfg: &EraseConfig,
    dir: &std::path::Path,
    quiet: bool,
) -> Result<EraseSummary> {
    let groups = study::by_relation(results);
    let absent: Vec<String> = cfg.relations.iter().filter(|r| !groups.contains_key(r.as_str())).cloned().collect();
    if let (Some(r), false) = (absent.first(), cfg.skip_absent) {
        bail!(
            "relation {r} has no evaluated fact in the run (relations there: {:?}; --skip-absent leaves such relations out)",
            groups.keys().collect::<Vec<_>>()
        );
    }
    let mut out: JsonlFile<EraseRecord> = JsonlFile::open(&dir.join("erase.jsonl"))?;
    let already = cfg.relations.iter().filter(|r| out.done.contains(r.as_str())).count();
    let mut bar = Bar::new("erase".to_string(), cfg.relations.len() as u64, "relations", Mode::detect(quiet, 1));
    bar.skip(already as u64);
    let allowed = study::allowed_ids(enc, data, &cfg.allow_before)?;
    let mut done = 0;
    let todo: Vec<&String> =
        cfg.relations.iter().filter(|r| !out.done.contains(r.as_str()) && !absent.contains(r)).collect();
    for rel in todo {
        let facts = &groups[rel.as_str()];
        let others: Vec<&FactResult> =
            groups.iter().filter(|(k, _)| *k != rel).flat_map(|(_, v)| v.iter().copied()).collect();
        let mut rng = study::rng_for(cfg.seed, rel);
        let others: Vec<&FactResult> =
            study::pick(&others, cfg.others.unwrap_or(usize::MAX), &mut rng).into_iter().copied().collect();
        let rel_q = study::fact_queries(enc, &study::facts_of(data, facts)?);
        let other_q = study::fact_queries(enc, &study::facts_of(data, &others)?);
        let neurons: Vec<(NeuronId, usize)> = study::neuron_counts(facts).into_iter().take(cfg.top).collect();
        let ids: Vec<NeuronId> = neurons.iter().map(|(n, _)| *n).collect();
        let measure = |model: &M| -> Result<(Quality, Quality)> {
            let (a, b) = (study::score(model, &rel_q, &allowed)?, study::score(model, &other_q, &allowed)?);
            Ok((study::quality(&rel_q, &a), study::quality(&other_q, &b)))
        };
        let (rel_before, other_before) = measure(model)?;
        let bits = study::bits_before_change(model, &ids)?;
        let undo = erase(model, &ids, Fill::Zero)?;
        let after = measure(model);
        let restored = study::undo_restores(model, undo, &bits)?;
        let (rel_after, other_after) = after?;
        if !restored {
            bail!("undoing the erasure of {rel} did not restore the weights bit for bit");
        }
        out.append(EraseRecord {
            relation_name: rel.clone(),
            facts: facts.len(),
            neurons,
            related: BeforeAfter { before: rel_before, after: rel_after },
            other: BeforeAfter { before: other_before, after: other_after },
            restored,
        })?;
        bar.inc(1);
        done += 1;
    }
    Ok(EraseSummary { erased: done, resumed: already, absent })
}
