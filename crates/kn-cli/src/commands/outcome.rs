//! JSON of predictions before/after interventions, with tokens decoded.

use kn_core::{Effect, Outcome};
use kn_models::ModelBundle;
use serde_json::{json, Value};

use crate::model_args::B;

/// `{gt_prob, argmax_completion, argmax_prob, argmax_ids}`.
pub fn outcome_json(bundle: &ModelBundle<B>, o: &Outcome) -> Value {
    let completion = bundle.tokenizer.as_ref().map(|t| t.decode(&o.argmax_ids));
    json!({
        "gt_prob": o.gt_prob,
        "argmax_completion": completion,
        "argmax_prob": o.argmax_prob,
        "argmax_ids": o.argmax_ids,
    })
}

/// `{before, after, relative_change}`.
pub fn effect_json(bundle: &ModelBundle<B>, e: &Effect) -> Value {
    json!({
        "before": outcome_json(bundle, &e.before),
        "after": outcome_json(bundle, &e.after),
        "relative_change": e.relative_change(),
    })
}
