//! `kn-cli attribute`: integrated-gradients scores of every FFN neuron for one prompt.

use anyhow::Result;
use kn_core::{attribute_observed, KnowledgeModel};
use kn_progress::{Bar, Mode};
use serde_json::json;

use crate::args::{read_neurons, write_json};
use crate::cli::AttributeArgs;
use crate::pictures;

/// Runs the command.
pub fn run(a: AttributeArgs) -> Result<()> {
    let cfg = a.ig.config()?;
    let marked = a.mark.as_deref().map(read_neurons).transpose()?.unwrap_or_default();
    let bundle = a.model.load()?;
    let pq = a.target_opts.queries(&bundle, &a.prompt, &a.target)?;
    let (layers, d_ff) = (bundle.model.dims().n_layers, bundle.model.dims().d_ff);
    if let Some(n) = marked.iter().find(|n| n.layer >= layers || n.index >= d_ff) {
        anyhow::bail!(
            "--mark: neuron [{}, {}] is outside this model ({layers} layers × {d_ff} neurons)",
            n.layer,
            n.index
        );
    }
    let mut bar = Bar::new("attributing", (pq.queries.len() * layers) as u64, "layers", Mode::terminal_only(a.quiet));
    let attr = attribute_observed(&bundle.model, &pq.queries, &cfg, &mut |_| bar.inc(1))?;
    let top: Vec<_> = attr.top_k(a.top).into_iter().map(|(n, s)| json!({"neuron": n, "score": s})).collect();
    let tokens: Vec<Option<String>> =
        pq.target_ids.iter().map(|&id| bundle.tokenizer.as_ref().and_then(|t| t.id_to_token(id))).collect();
    if let Some(path) = &a.heatmap {
        pictures::heatmap(&attr, &format!("{} -> {}", pq.prompt, a.target), &marked, path)?;
    }
    let mut value = serde_json::to_value(&attr)?;
    if let Some(obj) = value.as_object_mut() {
        obj.insert("prompt".into(), json!(pq.prompt));
        obj.insert("target".into(), json!(a.target));
        obj.insert("target_tokens".into(), json!(tokens));
        obj.insert("model".into(), json!(a.model.model));
        obj.insert("top".into(), json!(top));
    }
    write_json(&value, a.out.as_ref())
}
