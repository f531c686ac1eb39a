//! The "known facts" filter: keep a fact when the model's greedy answer to at least one of its
//! prompts is the object, so that attribution explains knowledge the model has rather than
//! noise. The rule, [`KnownRule`]: on some prompt every object token (the tokens before it
//! teacher-forced) ranks below `top_k` once the `allowed` tokens above it are discounted. With
//! `top_k = 1` and nothing allowed it is exactly "the greedy continuation is the object". A
//! causal model asked "X was born in" mostly continues with " the" (SmolLM2-135M does on 9 of
//! 10 such prompts), so that rule tests the article, not the fact; allowing " the", " a",
//! " an" to outrank the object keeps the rule's meaning (the model's first content word is the
//! object) without letting any other answer win. Facts are checked per relation in a seeded order (as `data --per-relation` samples)
//! until the relation has `n` known facts, so a run gets `n` known facts per relation without
//! checking every fact of the set; every verdict is a JSON line of `known.jsonl`, so a killed
//! filter resumes where it stopped and gives the same facts.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Result;
use burn::tensor::backend::Backend;
use kn_core::{probs_batch, KnowledgeModel, Query};
use kn_progress::{Bar, Mode};
use serde::{Deserialize, Serialize};

use crate::dataset::{self, Dataset, Fact};
use crate::encode::Encoder;
use crate::evaluate::{usable, EvalConfig};
use crate::results::{JsonlFile, Record};

/// The verdict on one fact (one line of `known.jsonl`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KnownRecord {
    /// Fact id.
    pub uuid: String,
    /// Relation.
    pub relation_name: String,
    /// Object.
    pub obj_label: String,
    /// Object token count (0 when it cannot be encoded).
    pub n_object_tokens: usize,
    /// Why the fact was not checked (a multi-token object skipped, an object or prompt that
    /// cannot be encoded); such a fact is not kept.
    pub skipped: Option<String>,
    /// Per prompt and object token: its rank among the model's next-token predictions (0: the
    /// argmax), the tokens before it teacher-forced.
    pub ranks: Vec<Vec<usize>>,
    /// Per prompt: the probability of the object (teacher-forced over its tokens).
    pub prob: Vec<f32>,
    /// Per prompt and object token: the [`TOP`] most probable token ids there, most probable
    /// first (teacher-forced: for rank-0 objects the first is the greedy continuation).
    pub top: Vec<Vec<Vec<u32>>>,
}

/// Token ids kept per position in [`KnownRecord::top`].
pub const TOP: usize = 8;

/// When a fact counts as known.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KnownRule {
    /// The object must rank below this (1: be the argmax), after discounting `allowed`.
    pub top_k: usize,
    /// Token ids that may outrank the object without counting (articles, say).
    pub allowed: Vec<u32>,
}

impl KnownRecord {
    /// Known under `rule` on at least one prompt (see [`KnownRule`]).
    pub fn known(&self, rule: &KnownRule) -> bool {
        self.skipped.is_none()
            && self.ranks.iter().zip(&self.top).any(|(ranks, tops)| {
                !ranks.is_empty()
                    && ranks.iter().zip(tops).all(|(&rank, top)| {
                        // Tokens above the object that are allowed, among those recorded.
                        let free = top.iter().take(rank).filter(|t| rule.allowed.contains(t)).count();
                        rank - free < rule.top_k
                    })
            })
    }
}

impl Record for KnownRecord {
    fn key(&self) -> &str {
        &self.uuid
    }
}

/// Counts of one relation (or all).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KnownCounts {
    /// Facts of the relation in the input set.
    pub facts: usize,
    /// Facts checked (the filter stops at `n` known).
    pub checked: usize,
    /// Checked and known.
    pub known: usize,
    /// Kept in the output set (at most `n`).
    pub kept: usize,
    /// Checked, not known.
    pub dropped_unknown: usize,
    /// Not checked: multi-token object (skipped) or not encodable.
    pub dropped_skipped: usize,
}

impl KnownCounts {
    fn add(&mut self, o: &Self) {
        self.facts += o.facts;
        self.checked += o.checked;
        self.known += o.known;
        self.kept += o.kept;
        self.dropped_unknown += o.dropped_unknown;
        self.dropped_skipped += o.dropped_skipped;
    }
}

/// What the filter kept, and its counts per relation and overall.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KnownSummary {
    /// The rule applied.
    pub rule: KnownRule,
    /// The words of `rule.allowed`, as given.
    #[serde(default)]
    pub allowed_words: Vec<String>,
    /// Per relation.
    pub relations: BTreeMap<String, KnownCounts>,
    /// All relations.
    pub overall: KnownCounts,
}

/// Settings of the filter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KnownConfig {
    /// Known facts kept per relation (`None`: every known fact; every fact is checked).
    pub per_relation: Option<usize>,
    /// Seed of the order in which a relation's facts are checked.
    pub seed: u64,
    /// Facts checked per relation at most (bounds the cost for relations the model hardly knows).
    pub max_checked: Option<usize>,
    /// Skip objects of several tokens (else their greedy answer of as many tokens is compared).
    pub skip_multi_token: bool,
    /// When a fact counts as known.
    pub rule: KnownRule,
}

/// Checks one fact on every prompt (the verdict does not depend on `top_k`: ranks are kept).
pub fn check<B: Backend, M: KnowledgeModel<B>>(
    model: &M,
    enc: &dyn Encoder,
    uuid: &str,
    fact: &Fact,
    skip_multi_token: bool,
) -> Result<KnownRecord> {
    let mut v = check_many(model, enc, &[(uuid, fact)], skip_multi_token)?;
    v.pop().ok_or_else(|| anyhow::anyhow!("no verdict for {uuid}"))
}

/// [`check`] for several facts, every (prompt, object token) position of them in one padded
/// batch pass (a pass over a few dozen short prompts costs little more than over one).
pub fn check_many<B: Backend, M: KnowledgeModel<B>>(
    model: &M,
    enc: &dyn Encoder,
    facts: &[(&str, &Fact)],
    skip_multi_token: bool,
) -> Result<Vec<KnownRecord>> {
    let cfg = EvalConfig { skip_multi_token, ..EvalConfig::default() };
    let mut recs = Vec::with_capacity(facts.len());
    // Per fact, its prompts' queries (empty when the fact is skipped).
    let mut prompts: Vec<Vec<Vec<Query>>> = Vec::with_capacity(facts.len());
    for (uuid, fact) in facts {
        let mut rec = KnownRecord {
            uuid: (*uuid).into(),
            relation_name: fact.relation_name.clone(),
            obj_label: fact.obj_label.clone(),
            n_object_tokens: 0,
            skipped: None,
            ranks: Vec::new(),
            prob: Vec::new(),
            top: Vec::new(),
        };
        let mut qs = Vec::new();
        match usable(enc, fact, &cfg) {
            Ok(n) => {
                rec.n_object_tokens = n;
                for s in &fact.sentences {
                    match enc.queries(s, &fact.obj_label) {
                        Ok(q) => qs.push(q),
                        Err(e) => {
                            rec.skipped = Some(format!("prompt {s:?}: {e:#}"));
                            qs.clear();
                            break;
                        }
                    }
                }
            }
            Err((why, n)) => {
                rec.n_object_tokens = n;
                rec.skipped = Some(why);
            }
        }
        recs.push(rec);
        prompts.push(qs);
    }
    let mut one_token = Vec::new();
    for q in prompts.iter().flatten().flatten() {
        for (&p, &t) in q.positions.iter().zip(&q.target_ids) {
            one_token.push(Query { ids: q.ids.clone(), positions: vec![p], target_ids: vec![t] });
        }
    }
    let refs: Vec<&Query> = one_token.iter().collect();
    let mut rows = probs_batch(model, &refs, None)?.into_iter().zip(&one_token);
    for (rec, qs) in recs.iter_mut().zip(&prompts) {
        for q in qs {
            let (mut prob, mut ranks, mut top) = (1.0f32, Vec::new(), Vec::new());
            for _ in q.iter().flat_map(|x| &x.target_ids) {
                let Some((row, one)) = rows.next() else { break };
                let (p, rank) = crate::study::prob_and_rank(&row, one.target_ids[0] as usize);
                prob *= p;
                ranks.push(rank);
                top.push(kn_core::predict::top_k_of(&row, TOP).iter().map(|b| b.id).collect());
            }
            rec.prob.push(prob);
            rec.ranks.push(ranks);
            rec.top.push(top);
        }
    }
    Ok(recs)
}

/// Facts checked in one batch pass by [`filter`].
const CHUNK: usize = 8;

/// Runs the filter over `data` into `dir/known.jsonl` (resuming what it holds) and returns the
/// kept facts with the counts.
pub fn filter<B: Backend, M: KnowledgeModel<B>>(
    model: &M,
    enc: &dyn Encoder,
    data: &Dataset,
    cfg: &KnownConfig,
    dir: &Path,
    quiet: bool,
) -> Result<(Dataset, KnownSummary)> {
    std::fs::create_dir_all(dir)?;
    let mut out: JsonlFile<KnownRecord> = JsonlFile::open(&dir.join("known.jsonl"))?;
    let mut previous: BTreeMap<String, KnownRecord> =
        std::mem::take(&mut out.records).into_iter().map(|r| (r.uuid.clone(), r)).collect();
    let order = dataset::shuffled_by_relation(data, cfg.seed);
    let (want, cap) = (cfg.per_relation.unwrap_or(usize::MAX), cfg.max_checked.unwrap_or(usize::MAX));
    let total: usize = order.values().map(|ids| ids.len().min(cap)).sum();
    let mut bar = Bar::new("known facts".to_string(), total as u64, "facts", Mode::detect(quiet, 200));
    let (mut kept, mut summary) = (Dataset::new(), KnownSummary { rule: cfg.rule.clone(), ..Default::default() });
    for (rel, ids) in &order {
        let mut c = KnownCounts { facts: ids.len(), ..Default::default() };
        let ids: Vec<&String> = ids.iter().take(cap).copied().collect();
        for chunk in ids.chunks(CHUNK) {
            if c.kept == want {
                break;
            }
            // Verdicts not in the file yet, checked together; a chunk may check a few facts
            // past the n-th known one (their verdicts are kept for a later, larger n).
            let new: Vec<(&str, &Fact)> = chunk
                .iter()
                .filter(|id| !previous.contains_key(id.as_str()))
                .map(|id| (id.as_str(), &data[id.as_str()]))
                .collect();
            if !new.is_empty() {
                for r in check_many(model, enc, &new, cfg.skip_multi_token)? {
                    out.append(r.clone())?;
                    previous.insert(r.uuid.clone(), r);
                }
            }
            for id in chunk {
                if c.kept == want {
                    break;
                }
                let Some(rec) = previous.get(id.as_str()) else { continue };
                bar.inc(1);
                c.checked += 1;
                if rec.skipped.is_some() {
                    c.dropped_skipped += 1;
                } else if rec.known(&cfg.rule) {
                    c.known += 1;
                    c.kept += 1;
                    kept.insert((*id).clone(), data[id.as_str()].clone());
                } else {
                    c.dropped_unknown += 1;
                }
            }
        }
        summary.overall.add(&c);
        summary.relations.insert((*rel).to_string(), c);
    }
    Ok((kept, summary))
}
