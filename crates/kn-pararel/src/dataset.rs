//! The PARAREL fact sets, built from the raw ParaRel / T-REx / Dai et al. files.
//!
//! - EAI set (EleutherAI's `pararel_evaluate.py`): for each of the 39 relations with a ParaRel
//!   pattern file, every T-REx triple, prompts = patterns with `[X]` → subject, `[Y]` → `[MASK]`.
//! - Paper set (Dai et al.): the 34 relations of `dai2022/query_pairs.json` with their patterns.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The 39 relations of the EAI set (ParaRel pattern files).
pub const EAI_RELATIONS: &[&str] = &[
    "P1001", "P101", "P103", "P106", "P108", "P127", "P1303", "P131", "P136", "P1376", "P138", "P140", "P1412", "P159",
    "P17", "P176", "P178", "P19", "P190", "P20", "P264", "P27", "P276", "P279", "P30", "P36", "P361", "P364", "P37",
    "P39", "P407", "P413", "P449", "P463", "P47", "P495", "P530", "P740", "P937",
];

/// Which fact set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Which {
    /// EleutherAI's set (39 relations, 27,610 facts, 224,674 prompts).
    Eai,
    /// The paper's set (34 relations, 27,738 facts, 253,448 prompts).
    Dai,
}

/// One fact: the EAI json record, plus the subject.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fact {
    /// Prompts, each with one `[MASK]` where the object goes.
    pub sentences: Vec<String>,
    /// Relation id (`P19`).
    pub relation_name: String,
    /// The object (the answer).
    pub obj_label: String,
    /// The subject.
    #[serde(default)]
    pub sub_label: String,
}

/// `{uuid: fact}`, ordered by id.
pub type Dataset = BTreeMap<String, Fact>;

/// Errors reading the raw files.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// A line or file is not the JSON expected.
    #[error("{path}:{line}: {reason}")]
    Parse {
        /// File.
        path: PathBuf,
        /// 1-based line (0: whole file).
        line: usize,
        /// What is wrong.
        reason: String,
    },
}

#[derive(Deserialize)]
struct PatternLine {
    pattern: String,
}

#[derive(Deserialize)]
struct TrexLine {
    sub_label: String,
    obj_label: String,
    uuid: String,
}

fn read(path: &Path) -> Result<String, DataError> {
    std::fs::read_to_string(path).map_err(|source| DataError::Io { path: path.to_path_buf(), source })
}

fn jsonl<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Vec<T>, DataError> {
    read(path)?
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| DataError::Parse {
                path: path.to_path_buf(),
                line: i + 1,
                reason: e.to_string(),
            })
        })
        .collect()
}

/// A pattern instantiated: `[X]` → subject, `[Y]` → `[MASK]`.
pub fn instantiate(pattern: &str, subject: &str) -> String {
    pattern.replace("[X]", subject).replace("[Y]", "[MASK]")
}

/// The patterns of a pattern file; each must hold `[X]` and `[Y]` once.
fn patterns(path: &Path) -> Result<Vec<String>, DataError> {
    let pats: Vec<String> = jsonl::<PatternLine>(path)?.into_iter().map(|p| p.pattern).collect();
    // The line of the k-th pattern (blank lines are skipped by `jsonl`).
    let text = read(path)?;
    let lines: Vec<usize> =
        text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()).map(|(i, _)| i + 1).collect();
    for (k, p) in pats.iter().enumerate() {
        for slot in ["[X]", "[Y]"] {
            let n = p.matches(slot).count();
            if n != 1 {
                return Err(DataError::Parse {
                    path: path.to_path_buf(),
                    line: lines.get(k).copied().unwrap_or(0),
                    reason: format!("pattern {p:?} has {n} {slot} (needs exactly one)"),
                });
            }
        }
    }
    Ok(pats)
}

/// Builds a fact set from a folder laid out like the shared `pararel` data
/// (`patterns/`, `trex/`, `dai2022/`).
pub fn build(dir: &Path, which: Which) -> Result<Dataset, DataError> {
    let mut out = Dataset::new();
    match which {
        Which::Eai => {
            for rel in EAI_RELATIONS {
                let pats = patterns(&dir.join("patterns").join(format!("{rel}.jsonl")))?;
                for t in jsonl::<TrexLine>(&dir.join("trex").join(format!("{rel}.jsonl")))? {
                    let sentences = pats.iter().map(|p| instantiate(p, &t.sub_label)).collect();
                    out.insert(
                        t.uuid,
                        Fact {
                            sentences,
                            relation_name: rel.to_string(),
                            obj_label: t.obj_label,
                            sub_label: t.sub_label,
                        },
                    );
                }
            }
        }
        Which::Dai => {
            let path = dir.join("dai2022").join("query_pairs.json");
            let pairs: BTreeMap<String, Vec<(String, String)>> = serde_json::from_str(&read(&path)?)
                .map_err(|e| DataError::Parse { path: path.clone(), line: 0, reason: e.to_string() })?;
            for (rel, list) in pairs {
                let pats = patterns(&dir.join("dai2022").join("patterns").join(format!("{rel}.jsonl")))?;
                for (i, (sub, obj)) in list.into_iter().enumerate() {
                    let sentences = pats.iter().map(|p| instantiate(p, &sub)).collect();
                    out.insert(
                        format!("dai-{rel}-{i:05}"),
                        Fact { sentences, relation_name: rel.clone(), obj_label: obj, sub_label: sub },
                    );
                }
            }
        }
    }
    Ok(out)
}

/// Facts and prompts per relation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Relations.
    pub relations: usize,
    /// Facts.
    pub facts: usize,
    /// Prompts.
    pub prompts: usize,
    /// `relation → (facts, prompts)`.
    pub per_relation: BTreeMap<String, (usize, usize)>,
}

/// Counts of a dataset.
pub fn counts(d: &Dataset) -> Counts {
    let mut c = Counts::default();
    for f in d.values() {
        let e = c.per_relation.entry(f.relation_name.clone()).or_default();
        e.0 += 1;
        e.1 += f.sentences.len();
        c.facts += 1;
        c.prompts += f.sentences.len();
    }
    c.relations = c.per_relation.len();
    c
}

/// The prompt of a causal model for a sentence whose `[MASK]` ends it (before final
/// punctuation): the text before the mask. `None` when something other than punctuation follows.
pub fn causal_prompt(sentence: &str) -> Option<String> {
    let (before, after) = sentence.split_once("[MASK]")?;
    if after.contains("[MASK]") || !after.trim().chars().all(|c| c.is_ascii_punctuation()) {
        return None;
    }
    let p = before.trim_end();
    (!p.is_empty()).then(|| p.to_string())
}

/// The left-to-right version of a dataset: each fact keeps the prompts usable by a causal LM
/// (the object ends the sentence), rewritten without `[MASK]`; facts with none are dropped.
pub fn causal(d: &Dataset) -> Dataset {
    d.iter()
        .filter_map(|(id, f)| {
            let sentences: Vec<String> = f.sentences.iter().filter_map(|s| causal_prompt(s)).collect();
            (!sentences.is_empty()).then(|| (id.clone(), Fact { sentences, ..f.clone() }))
        })
        .collect()
}

/// A seeded, stratified sample: at most `n` facts of each relation, the first `n` of
/// [`shuffled_by_relation`]. Relations with fewer facts keep them all.
pub fn sample_per_relation(d: &Dataset, n: usize, seed: u64) -> Dataset {
    shuffled_by_relation(d, seed)
        .values()
        .flat_map(|ids| ids.iter().take(n))
        .map(|id| ((*id).clone(), d[*id].clone()))
        .collect()
}

/// Each relation's fact ids in a seeded order: a Fisher–Yates shuffle of the relation's facts
/// (in id order) with `kn_core::planted::Lcg(seed)`, so the same seed gives the same order on
/// every platform.
pub fn shuffled_by_relation(d: &Dataset, seed: u64) -> BTreeMap<&str, Vec<&String>> {
    let mut by_relation: BTreeMap<&str, Vec<&String>> = BTreeMap::new();
    for (id, f) in d {
        by_relation.entry(f.relation_name.as_str()).or_default().push(id);
    }
    let mut rng = kn_core::planted::Lcg(seed ^ 0x5851_f42d_4c95_7f2d);
    for ids in by_relation.values_mut() {
        for i in (1..ids.len()).rev() {
            let j = ((rng.uniform() * (i + 1) as f32) as usize).min(i);
            ids.swap(i, j);
        }
    }
    by_relation
}

/// The facts of relations with at least `n` patterns (the most prompts any of their facts has).
pub fn min_patterns(d: &Dataset, n: usize) -> Dataset {
    let mut most: BTreeMap<&str, usize> = BTreeMap::new();
    for f in d.values() {
        let e = most.entry(f.relation_name.as_str()).or_default();
        *e = (*e).max(f.sentences.len());
    }
    d.iter().filter(|(_, f)| most[f.relation_name.as_str()] >= n).map(|(k, f)| (k.clone(), f.clone())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(per_relation: &[(&str, usize)]) -> Dataset {
        let mut d = Dataset::new();
        for (r, count) in per_relation {
            for i in 0..*count {
                let f = Fact {
                    sentences: vec![format!("s{i} [MASK]")],
                    relation_name: r.to_string(),
                    obj_label: format!("o{i}"),
                    sub_label: format!("s{i}"),
                };
                d.insert(format!("{r}-{i:03}"), f);
            }
        }
        d
    }

    #[test]
    fn samples_are_stratified_seeded_and_capped() {
        let d = facts(&[("P17", 50), ("P19", 30), ("P36", 3)]);
        let a = sample_per_relation(&d, 10, 7);
        let count = |s: &Dataset, r: &str| s.values().filter(|f| f.relation_name == r).count();
        assert_eq!((count(&a, "P17"), count(&a, "P19"), count(&a, "P36")), (10, 10, 3));
        assert_eq!(a, sample_per_relation(&d, 10, 7), "same seed, same sample");
        assert_ne!(a, sample_per_relation(&d, 10, 8), "another seed, another sample");
        assert!(a.iter().all(|(id, f)| d[id] == *f), "facts are copied unchanged");
        // Not simply the first ids.
        assert!(a.keys().any(|id| id.starts_with("P17-") && id.as_str() >= "P17-010"));
        assert_eq!(sample_per_relation(&d, 100, 7), d, "a cap above every relation keeps everything");
    }

    #[test]
    fn min_patterns_keeps_relations_by_their_richest_fact() {
        let mut d = facts(&[("P17", 2), ("P19", 2)]);
        d.get_mut("P17-001").unwrap().sentences = vec!["a [MASK]".into(), "b [MASK]".into(), "c [MASK]".into()];
        let kept = min_patterns(&d, 3);
        assert_eq!(kept.keys().collect::<Vec<_>>(), vec!["P17-000", "P17-001"]);
        assert_eq!(min_patterns(&d, 1), d);
    }

    #[test]
    fn causal_prompts_need_the_object_last() {
        assert_eq!(causal_prompt("Paris is the capital of [MASK] ."), Some("Paris is the capital of".into()));
        assert_eq!(causal_prompt("[MASK] is the capital of France."), None);
        assert_eq!(causal_prompt("The capital of France, [MASK], is big"), None);
    }
}
