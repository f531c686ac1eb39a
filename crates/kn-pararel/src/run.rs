//! The run loop: this shard's facts, skipping those already done, one record per fact.

use std::path::Path;

use anyhow::Result;
use burn::tensor::backend::AutodiffBackend;
use kn_core::KnowledgeModel;
use kn_progress::{Bar, Mode};

use crate::dataset::{Dataset, Fact};
use crate::encode::Encoder;
use crate::evaluate::{evaluate_many, usable, EvalConfig, Item};
use crate::results::ResultsFile;
use crate::shard::Shard;

/// What a run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct RunSummary {
    /// Facts of this shard.
    pub shard_facts: usize,
    /// Already done before this run.
    pub resumed: usize,
    /// Evaluated now.
    pub evaluated: usize,
}

/// The unrelated fact of `uuid`: a deterministic pseudo-random pick (from the seed and the id,
/// so every shard agrees) among `ids` (the facts that can be evaluated) of a different
/// relation, or any other fact.
pub fn unrelated_of<'a>(
    data: &'a Dataset,
    ids: &'a [&'a String],
    uuid: &str,
    seed: u64,
    any: bool,
) -> Option<(&'a str, &'a Fact)> {
    let rel = &data.get(uuid)?.relation_name;
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
    for b in uuid.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    let n = ids.len();
    (0..n).map(|k| ids[(h as usize).wrapping_add(k) % n]).find_map(|id| {
        let f = &data[id.as_str()];
        let ok = id.as_str() != uuid && (any || &f.relation_name != rel);
        ok.then_some((id.as_str(), f))
    })
}

/// How a run takes its facts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pace {
    /// At most this many facts of the shard (resumed ones count).
    pub limit: Option<usize>,
    /// Facts evaluated together, their attributions in one schedule ([`evaluate_many`]); each
    /// is written as soon as its batch is done. 1 on a CPU (its passes already fill the cores);
    /// more where prompts are stacked for a GPU.
    pub facts_per_batch: usize,
    /// No progress bar.
    pub quiet: bool,
}

impl Default for Pace {
    fn default() -> Self {
        Self { limit: None, facts_per_batch: 1, quiet: true }
    }
}

/// Evaluates this shard's facts of `data` into `dir/<shard file>`, resuming what is there.
pub fn run<B: AutodiffBackend, M: KnowledgeModel<B>>(
    model: &M,
    enc: &dyn Encoder,
    data: &Dataset,
    cfg: &EvalConfig,
    shard: Shard,
    dir: &Path,
    pace: Pace,
) -> Result<RunSummary> {
    let Pace { limit, facts_per_batch, quiet } = pace;
    std::fs::create_dir_all(dir)?;
    let mut out = ResultsFile::open(&dir.join(shard.file_name()))?;
    let ids: Vec<&String> = data.keys().collect();
    let mine: Vec<&String> = ids
        .iter()
        .enumerate()
        .filter(|(k, _)| shard.takes(*k))
        .map(|(_, id)| *id)
        .take(limit.unwrap_or(usize::MAX))
        .collect();
    // Controls are drawn from facts that can be evaluated (the same set in every shard).
    let controls: Vec<&String> =
        ids.iter().copied().filter(|id| usable(enc, &data[id.as_str()], cfg).is_ok()).collect();
    let resumed = mine.iter().filter(|id| out.done.contains(id.as_str())).count();
    let todo: Vec<&String> = mine.iter().filter(|id| !out.done.contains(id.as_str())).copied().collect();
    let mut bar =
        Bar::new(format!("shard {}/{}", shard.index, shard.count), mine.len() as u64, "facts", Mode::detect(quiet, 50));
    bar.skip(resumed as u64);
    for batch in todo.chunks(facts_per_batch.max(1)) {
        let items: Vec<Item> = batch
            .iter()
            .map(|id| Item {
                uuid: id.as_str(),
                fact: &data[id.as_str()],
                unrelated: unrelated_of(data, &controls, id, cfg.seed, cfg.unrelated_any),
            })
            .collect();
        for r in evaluate_many(model, enc, &items, cfg)? {
            out.append(r)?;
            bar.inc(1);
        }
    }
    Ok(RunSummary { shard_facts: mine.len(), resumed, evaluated: todo.len() })
}
