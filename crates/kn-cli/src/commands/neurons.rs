//! `kn-cli neurons`: refined knowledge neurons of a fact from several prompts.

use std::io::IsTerminal;

use anyhow::{bail, Result};
use kn_core::{attribute, coarse, refine, NeuronId, Sharing};
use serde_json::json;

use crate::args::{read_lines, write_json};
use crate::cli::NeuronsArgs;

/// Runs the command.
pub fn run(a: NeuronsArgs) -> Result<()> {
    let cfg = a.ig.config()?;
    let mut prompts = a.prompt.clone();
    if let Some(f) = &a.prompts {
        prompts.extend(read_lines(f)?);
    }
    if prompts.is_empty() {
        bail!("no prompts: give --prompt (repeatable) or --prompts FILE");
    }
    let sharing = if a.adaptive_p { Sharing::paper() } else { Sharing::Fixed(a.p) };
    let rule = a.thresholds.rule();
    rule.validate()?;
    if !a.adaptive_p && !(0.0..1.0).contains(&a.p) {
        bail!("--p {} is outside [0, 1)", a.p);
    }
    let progress = !a.quiet && std::io::stderr().is_terminal();
    let bundle = a.model.load()?;
    let mut per_prompt = Vec::with_capacity(prompts.len());
    for (k, p) in prompts.iter().enumerate() {
        if progress {
            eprintln!("[{}/{}] attributing {p:?}", k + 1, prompts.len());
        }
        let pq = a.target_opts.queries(&bundle, p, &a.target)?;
        per_prompt.push(coarse(&attribute(&bundle.model, &pq.queries, &cfg)?, rule)?);
    }
    let mut negatives: Vec<Vec<NeuronId>> = Vec::new();
    if let Some(f) = &a.negative {
        for line in read_lines(f)? {
            let Some((p, t)) = line.split_once('\t') else {
                bail!("{}: negative examples are 'prompt<TAB>target' lines, got {line:?}", f.display());
            };
            let pq = a.target_opts.queries(&bundle, p, t)?;
            negatives.push(coarse(&attribute(&bundle.model, &pq.queries, &cfg)?, rule)?);
        }
    }
    let refined = refine(&per_prompt, sharing, &negatives, a.negative_share)?;
    write_json(
        &json!({
            "neurons": refined.neurons,
            "p": refined.p,
            "n_prompts": refined.n_prompts,
            "removed_by_negatives": refined.removed_by_negatives,
            "coarse": per_prompt,
            "target": a.target,
            "threshold": rule,
            "settings": cfg,
            "model": a.model.model,
        }),
        a.out.as_ref(),
    )
}
