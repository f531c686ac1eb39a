//! Fetching the raw PARAREL files from their public sources (pinned commits, see the shared
//! data's SOURCES.md), laid out as `patterns/`, `trex/` and `dai2022/`.

use std::path::Path;

use anyhow::{Context, Result};

use crate::dataset::EAI_RELATIONS;

const PARAREL: &str =
    "https://raw.githubusercontent.com/yanaiela/pararel/cb5554678457beb5ac163d888f1ce8cf174b3f0b/data";
const DAI: &str =
    "https://raw.githubusercontent.com/Hunter-DDM/knowledge-neurons/922dfd9e05ef55f46af078ba4bd334989a45a618/data";

/// (url, relative path) of every file.
pub fn sources() -> Vec<(String, String)> {
    let mut v = Vec::new();
    for r in EAI_RELATIONS {
        v.push((format!("{PARAREL}/pattern_data/graphs_json/{r}.jsonl"), format!("patterns/{r}.jsonl")));
        v.push((format!("{PARAREL}/trex_lms_vocab/{r}.jsonl"), format!("trex/{r}.jsonl")));
    }
    v.push((format!("{DAI}/PARAREL/query_pairs.json"), "dai2022/query_pairs.json".into()));
    v.push((format!("{DAI}/LAMA/raw_data/relations.jsonl"), "dai2022/relations.jsonl".into()));
    for r in EAI_RELATIONS.iter().filter(|r| !["P1001", "P131", "P17", "P276", "P361"].contains(r)) {
        v.push((format!("{DAI}/PARAREL/raw_data/patterns/{r}.jsonl"), format!("dai2022/patterns/{r}.jsonl")));
    }
    v
}

/// Downloads every missing file into `dir`.
pub fn download(dir: &Path) -> Result<usize> {
    let mut n = 0;
    for (url, rel) in sources() {
        let path = dir.join(&rel);
        if path.is_file() {
            continue;
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let body = ureq::get(&url)
            .call()
            .with_context(|| format!("downloading {url}"))?
            .into_string()
            .with_context(|| format!("reading {url}"))?;
        std::fs::write(&path, body).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("fetched {rel}");
        n += 1;
    }
    Ok(n)
}
