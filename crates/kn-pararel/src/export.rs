//! Writes EleutherAI's result files so existing analysis code reads our runs:
//! `{model}_pararel_neurons_{rank}.json` (uuid → [[layer, neuron]]) and
//! `{model}_pararel_results_{rank}.json` (uuid → suppression/enhancement related/unrelated).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::{json, Map, Value};

use crate::evaluate::{FactResult, Stats};

fn stats(s: &Stats) -> Value {
    json!({"pct_change": s.pct_change, "correct_before": s.correct_before, "correct_after": s.correct_after, "n_prompts": s.n_prompts})
}

/// One fact's entry of EleutherAI's results file.
pub fn eai_record(r: &FactResult) -> Value {
    json!({
        "suppression": {"related": stats(&r.suppression.related), "unrelated": stats(&r.suppression.unrelated)},
        "enhancement": {"related": stats(&r.enhancement.related), "unrelated": stats(&r.enhancement.unrelated)},
        "n_refined_neurons": r.neurons.len(),
        "n_unrelated_neurons": r.neurons.len(),
        "relation_name": r.relation_name,
    })
}

/// Writes both files for `rank` into `dir`; returns their paths.
pub fn export(results: &[FactResult], model: &str, rank: usize, dir: &Path) -> Result<(PathBuf, PathBuf)> {
    let (mut neurons, mut res) = (Map::new(), Map::new());
    for r in results.iter().filter(|r| r.skipped.is_none()) {
        neurons.insert(r.uuid.clone(), json!(r.neurons));
        res.insert(r.uuid.clone(), eai_record(r));
    }
    let name = model.replace('/', "_");
    let a = dir.join(format!("{name}_pararel_neurons_{rank}.json"));
    let b = dir.join(format!("{name}_pararel_results_{rank}.json"));
    std::fs::write(&a, Value::Object(neurons).to_string()).with_context(|| format!("writing {}", a.display()))?;
    std::fs::write(&b, Value::Object(res).to_string()).with_context(|| format!("writing {}", b.display()))?;
    Ok((a, b))
}
