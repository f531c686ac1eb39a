//! `kn-cli predict`: top-k predictions at the target position.

use anyhow::{anyhow, bail, Result};
use kn_core::{predict::top_k, KnowledgeModel, ModelInput, Objective};
use kn_models::prompt::encode_prompt;
use serde_json::json;

use crate::args::write_json;
use crate::cli::PredictArgs;

/// Runs the command.
pub fn run(a: PredictArgs) -> Result<()> {
    let bundle = a.model.load()?;
    let model = &bundle.model;
    let dims = model.dims();
    let objective = model.objective();
    let (ids, pos) = match (&a.prompt, &a.ids) {
        (Some(text), _) => {
            let tok = bundle.tokenizer.as_ref().ok_or_else(|| {
                anyhow!("model '{}' has no tokenizer files: pass --tokenizer DIR or --ids", a.model.model)
            })?;
            let p = encode_prompt(tok, &dims, objective, text, 1)?;
            (p.ids, p.target_positions[0])
        }
        (None, Some(ids)) => {
            if ids.is_empty() {
                bail!("--ids is empty");
            }
            if let Some(bad) = ids.iter().find(|&&i| i as usize >= dims.vocab_size) {
                bail!("token id {bad} is out of range for a vocabulary of {} tokens", dims.vocab_size);
            }
            if ids.len() > dims.max_positions {
                bail!("{} tokens given; the model accepts at most {}", ids.len(), dims.max_positions);
            }
            let mask = a.mask_id.or_else(|| bundle.tokenizer.as_ref().and_then(|t| t.mask_token()).map(|(_, id)| id));
            let pos = match (objective, mask) {
                (Objective::MaskedLm, Some(mask)) => {
                    ids.iter().position(|&i| i == mask).ok_or_else(|| anyhow!("--ids contains no mask id {mask}"))?
                }
                // Never a guess: a masked LM predicts at its mask, whose id only a tokenizer knows.
                (Objective::MaskedLm, None) => {
                    bail!("a masked LM predicts at its [MASK]: without a tokenizer, give its id with --mask-id")
                }
                (Objective::CausalLm, _) => ids.len() - 1,
            };
            (ids.clone(), pos)
        }
        (None, None) => bail!("give --prompt or --ids"),
    };
    let device = model.device();
    let input = ModelInput::from_ids(&ids, &device);
    let preds = top_k(model, &input, pos, a.top_k)?;
    let token = |id: u32| bundle.tokenizer.as_ref().and_then(|t| t.id_to_token(id));
    let predictions: Vec<_> = preds.iter().map(|p| json!({"token": token(p.id), "id": p.id, "prob": p.prob})).collect();
    write_json(
        &json!({
        "model": a.model.model,
        "objective": objective,
        "position": pos,
        "input_ids": ids,
        "predictions": predictions,
        }),
        None,
    )
}
