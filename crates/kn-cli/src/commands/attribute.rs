//! `kn-cli attribute`: integrated-gradients scores of every FFN neuron for one prompt.

use anyhow::Result;
use kn_core::attribute;
use serde_json::json;

use crate::args::write_json;
use crate::cli::AttributeArgs;

/// Runs the command.
pub fn run(a: AttributeArgs) -> Result<()> {
    let cfg = a.ig.config()?;
    let bundle = a.model.load()?;
    let pq = a.target_opts.queries(&bundle, &a.prompt, &a.target)?;
    let attr = attribute(&bundle.model, &pq.queries, &cfg)?;
    let top: Vec<_> = attr.top_k(a.top).into_iter().map(|(n, s)| json!({"neuron": n, "score": s})).collect();
    let tokens: Vec<Option<String>> =
        pq.target_ids.iter().map(|&id| bundle.tokenizer.as_ref().and_then(|t| t.id_to_token(id))).collect();
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
