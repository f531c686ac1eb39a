//! Fetching the raw PARAREL files from their public sources (pinned commits, see the shared
//! data's SOURCES.md), laid out as `patterns/`, `trex/` and `dai2022/`.

use std::path::Path;

use anyhow::{Context, Result};

use crate::dataset::EAI_RELATIONS;

const PARAREL: &str =
    "https://raw.githubusercontent.com/yanaiela/pararel/cb5554678457beb5ac163d888f1ce8cf174b3f0b/data";
const DAI: &str =
    "https://raw.githubusercontent.com/Hunter-DDM/knowledge-neurons/922dfd9e05ef55f46af078ba4bd334989a45a618/data";

/// Where the two source repositories' `data/` folders are served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mirrors {
    /// PARAREL's `data/` (yanaiela/pararel).
    pub pararel: String,
    /// The paper authors' `data/` (Hunter-DDM/knowledge-neurons).
    pub dai: String,
}

impl Default for Mirrors {
    /// The pinned GitHub commits, unless `KN_PARAREL_URL` / `KN_DAI_URL` name other copies
    /// (a local mirror on a machine without GitHub access).
    fn default() -> Self {
        Self {
            pararel: std::env::var("KN_PARAREL_URL").unwrap_or_else(|_| PARAREL.to_string()),
            dai: std::env::var("KN_DAI_URL").unwrap_or_else(|_| DAI.to_string()),
        }
    }
}

/// (url, relative path) of every file.
pub fn sources(m: &Mirrors) -> Vec<(String, String)> {
    let (pararel, dai) = (m.pararel.trim_end_matches('/'), m.dai.trim_end_matches('/'));
    let mut v = Vec::new();
    for r in EAI_RELATIONS {
        v.push((format!("{pararel}/pattern_data/graphs_json/{r}.jsonl"), format!("patterns/{r}.jsonl")));
        v.push((format!("{pararel}/trex_lms_vocab/{r}.jsonl"), format!("trex/{r}.jsonl")));
    }
    v.push((format!("{dai}/PARAREL/query_pairs.json"), "dai2022/query_pairs.json".into()));
    v.push((format!("{dai}/LAMA/raw_data/relations.jsonl"), "dai2022/relations.jsonl".into()));
    for r in EAI_RELATIONS.iter().filter(|r| !["P1001", "P131", "P17", "P276", "P361"].contains(r)) {
        v.push((format!("{dai}/PARAREL/raw_data/patterns/{r}.jsonl"), format!("dai2022/patterns/{r}.jsonl")));
    }
    v
}

/// Downloads every missing file into `dir` from the default [`Mirrors`].
pub fn download(dir: &Path) -> Result<usize> {
    download_from(dir, &Mirrors::default())
}

/// Downloads every missing file into `dir`; returns how many were fetched. Each file is
/// written to a temporary name and renamed, so an interrupted download leaves no partial file
/// that a rerun would take as complete.
pub fn download_from(dir: &Path, mirrors: &Mirrors) -> Result<usize> {
    let mut n = 0;
    for (url, rel) in sources(mirrors) {
        let path = dir.join(&rel);
        if path.is_file() {
            continue;
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        let body = ureq::get(&url)
            .call()
            .with_context(|| format!("downloading {url}"))?
            .into_string()
            .with_context(|| format!("reading {url}"))?;
        let tmp = path.with_extension("part");
        std::fs::write(&tmp, body).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("fetched {rel}");
        n += 1;
    }
    Ok(n)
}
