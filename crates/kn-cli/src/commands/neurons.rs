//! `kn-cli neurons`: refined knowledge neurons of a fact from several prompts.

use anyhow::{bail, Result};
use kn_core::{attribute, attribute_many_observed, coarse, refine, KnowledgeModel, NeuronId, Sharing};
use kn_progress::{Bar, Mode};
use serde_json::json;

use crate::args::{read_lines, write_json};
use crate::cli::NeuronsArgs;
use crate::pictures;

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
    let bundle = a.model.load()?;
    let layers = bundle.model.dims().n_layers;
    let mut per_prompt = Vec::with_capacity(prompts.len());
    let queries = prompts.iter().map(|p| a.target_opts.queries(&bundle, p, &a.target)).collect::<Result<Vec<_>>>()?;
    let units: usize = queries.iter().map(|pq| pq.queries.len() * layers).sum();
    let mut bar = Bar::new(format!("{} prompts", prompts.len()), units as u64, "layers", Mode::terminal_only(a.quiet));
    // All prompts in one schedule: their passes keep every core busy to the end.
    let all: Vec<&[kn_core::Query]> = queries.iter().map(|pq| pq.queries.as_slice()).collect();
    for attr in attribute_many_observed(&bundle.model, &all, &cfg, &mut |_| bar.inc(1))? {
        per_prompt.push(coarse(&attr, rule)?);
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
    if let Some(path) = &a.plot {
        let title = format!("Knowledge neurons of '{}' per layer ({} prompts)", a.target, prompts.len());
        pictures::layer_bars(layers, &refined.neurons, &per_prompt, &title, path)?;
    }
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
