//! `kn-cli suppress | enhance | erase | edit`: change the chosen neurons and report the
//! prediction before and after.

use anyhow::{anyhow, bail, Result};
use kn_core::{
    activation_signs, edit_signed, enhance, erase, measure, suppress, EditRule, Effect, Fill, KnowledgeModel, NoHook,
};
use serde_json::json;

use crate::args::{read_neurons, write_json};
use crate::cli::{EditArgs, EraseArgs, InterveneArgs};
use crate::commands::outcome::effect_json;

/// `suppress` (factor 0) or `enhance` (factor `factor`).
pub fn activations(a: InterveneArgs, factor: Option<f32>) -> Result<()> {
    let neurons = read_neurons(&a.neurons)?;
    let bundle = a.model.load()?;
    let pq = a.target_opts.queries(&bundle, &a.prompt, &a.target)?;
    let effect = match factor {
        None => suppress(&bundle.model, &pq.queries, &neurons)?,
        Some(f) => enhance(&bundle.model, &pq.queries, &neurons, f)?,
    };
    let mut v = effect_json(&bundle, &effect);
    v["neurons"] = json!(neurons);
    v["prompt"] = json!(pq.prompt);
    write_json(&v, a.out.as_ref())
}

/// `erase`: value vectors set to zero or to the unknown token's embedding.
pub fn erase_cmd(a: EraseArgs) -> Result<()> {
    let neurons = read_neurons(&a.common.neurons)?;
    let mut bundle = a.common.model.load()?;
    let pq = a.common.target_opts.queries(&bundle, &a.common.prompt, &a.common.target)?;
    let fill = if a.unk {
        let tok = bundle.tokenizer.as_ref().ok_or_else(|| anyhow!("--unk needs the tokenizer"))?;
        let (_, unk) = tok.unk_token().ok_or_else(|| {
            anyhow!(
                "the tokenizer {} declares no unknown token (byte-level vocabularies such as Llama 3's have none): \
                 erase with zeros (omit --unk)",
                tok.source().display()
            )
        })?;
        Fill::Token(unk)
    } else {
        Fill::Zero
    };
    let before = measure(&bundle.model, &pq.queries, &mut NoHook)?;
    let undo = erase(&mut bundle.model, &neurons, fill)?;
    let after = measure(&bundle.model, &pq.queries, &mut NoHook)?;
    undo.undo(&mut bundle.model);
    let mut v = effect_json(&bundle, &Effect { before, after });
    v["neurons"] = json!(neurons);
    write_json(&v, a.common.out.as_ref())
}

/// `edit`: move the value vectors from the current answer to `--new-target`.
pub fn edit_cmd(a: EditArgs) -> Result<()> {
    let neurons = read_neurons(&a.common.neurons)?;
    let mut bundle = a.common.model.load()?;
    let pq = a.common.target_opts.queries(&bundle, &a.common.prompt, &a.common.target)?;
    let new = a.common.target_opts.queries(&bundle, &a.common.prompt, &a.new_target)?;
    if new.target_ids.len() != 1 || pq.target_ids.len() != 1 {
        bail!("edit needs single-token targets (got {} and {} tokens)", pq.target_ids.len(), new.target_ids.len());
    }
    let before = measure(&bundle.model, &pq.queries, &mut NoHook)?;
    let from = if a.from_target { pq.target_ids[0] } else { before.argmax_ids[0] };
    let rule = if a.paper { EditRule::paper() } else { EditRule::Eai { lambda: a.lambda } };
    // Each value vector moves in the direction its activation at the prompt gives it (signed
    // for gated FFNs; the Python library's rule for positive activations).
    let signs = activation_signs(&bundle.model, &pq.queries[0], &neurons)?;
    let undo = edit_signed(&mut bundle.model, &neurons, &signs, from, new.target_ids[0], rule)?;
    let after = measure(&bundle.model, &pq.queries, &mut NoHook)?;
    let new_after = measure(&bundle.model, &new.queries, &mut NoHook)?;
    undo.undo(&mut bundle.model);
    let new_before = measure(&bundle.model, &new.queries, &mut NoHook)?;
    let mut v = effect_json(&bundle, &Effect { before, after });
    v["new_target"] =
        json!({"target": a.new_target, "prob_before": new_before.gt_prob, "prob_after": new_after.gt_prob});
    v["neurons"] = json!(neurons);
    v["activation_signs"] = json!(signs);
    v["n_layers"] = json!(bundle.model.dims().n_layers);
    write_json(&v, a.common.out.as_ref())
}
