//! The library API in one page: load a model (folder or Hub name), find the refined knowledge
//! neurons of a fact from several prompts, and suppress them.
//!
//! Run: `cargo run --release -p kn-models --example find_neurons -- data/fixtures/tiny-bert`

use kn_core::{attribute, coarse, refine, suppress, AttributionConfig, KnowledgeModel, Sharing, Threshold};
use kn_models::{load_model, prompt::prompt_queries, LoadOptions};

/// The backend the cargo features chose (ndarray by default), with autodiff.
type B = kn_models::backend::AutodiffBackend;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let name = std::env::args().nth(1).unwrap_or_else(|| "bert-base-uncased".into());
    let bundle = load_model::<B>(&name, &LoadOptions::default(), &Default::default())?;
    let (model, tok) = (&bundle.model, bundle.tokenizer.as_ref().ok_or("no tokenizer")?);
    let prompts = [
        "the capital of france is [MASK]",
        "[MASK] is the capital of france",
        "the eiffel tower is situated in [MASK]",
    ];
    let cfg = AttributionConfig::default(); // 20 steps, batch 20, EAI quadrature, probability
    let mut coarse_sets = Vec::new();
    for p in prompts {
        let q = prompt_queries(tok, &model.dims(), model.objective(), p, "paris", Default::default(), false)?;
        coarse_sets.push(coarse(&attribute(model, &q.queries, &cfg)?, Threshold::Adaptive(0.3))?);
    }
    let refined = refine(&coarse_sets, Sharing::Fixed(0.5), &[], 0.0)?;
    let q = prompt_queries(tok, &model.dims(), model.objective(), prompts[0], "paris", Default::default(), false)?;
    let effect = suppress(model, &q.queries, &refined.neurons)?;
    println!(
        "{}",
        serde_json::json!({"neurons": refined.neurons, "before": effect.before.gt_prob, "after": effect.after.gt_prob})
    );
    Ok(())
}
