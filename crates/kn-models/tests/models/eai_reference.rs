//! Our integrated gradients reproduce EleutherAI's knowledge-neurons 0.0.2 (`get_scores`,
//! `get_refined_neurons`) on the tiny random BERT fixture; the reference numbers were written
//! by scripts/gen_fixtures.py with the Python library itself.

use crate::common::*;
use kn_core::{attribute, AttributionConfig};
use kn_models::{load_dir, TextTokenizer};

fn setup() -> (kn_models::Transformer<AB>, TextTokenizer, serde_json::Value) {
    let dev = Default::default();
    let (model, _) = load_dir::<AB>(&fixture("tiny-bert"), &[], &dev).expect("tiny-bert");
    let tok = TextTokenizer::from_dir(&fixture("tiny-bert")).expect("tokenizer");
    (model, tok, golden("eai-tiny-bert.json"))
}

#[test]
fn ig_scores_match_the_python_library() {
    let (model, tok, gold) = setup();
    let q = queries(&model, &tok, gold["prompt"].as_str().unwrap(), "paris");
    for (key, batch) in [("scores", 20), ("scores_batch5", 5)] {
        let cfg = AttributionConfig { steps: 20, batch_size: batch, ..Default::default() };
        let attr = attribute(&model, &q, &cfg).expect("attribution");
        let ours: Vec<f32> = attr.scores.iter().flatten().copied().collect();
        let theirs = floats(&gold[key]);
        let max = theirs.iter().copied().fold(0.0f32, |m, x| m.max(x.abs()));
        let diff = max_abs_diff(&ours, &theirs);
        // Relative to the largest score: float32 summation orders differ.
        within(&format!("{key}: max |ours - EAI| / largest score"), diff / max, TOL.eai_rel);
    }
}
