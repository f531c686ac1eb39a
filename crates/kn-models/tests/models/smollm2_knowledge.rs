//! Knowledge neurons of a real English fact in SmolLM2-135M (a Llama-architecture model,
//! fetched from PyPI as a GGUF file): the refined neurons of "France → Paris" from five
//! paraphrases, with the Python library's settings (20 steps, batch 20, adaptive threshold 0.3,
//! p 0.5), lower P(" Paris") on those prompts far more than they change facts of other
//! relations (another capital would be no control: facts of one relation share neurons).
//!
//! Bounds: related mean change ≤ −50 %, at least twice the mean |change| of the unrelated facts,
//! and enhancement raising P(" Paris"); with negative examples, a smaller unrelated change.
//! The figures measured are printed (`--nocapture`) and quoted in the README.

use crate::common::*;
use kn_core::{
    attribute_many, coarse, enhance, refine, suppress, AttributionConfig, NeuronId, Query, Sharing, Threshold,
};
use kn_models::prompt::{prompt_queries, MultiToken};

const PARIS: [&str; 5] = [
    "The capital of France is",
    "The capital city of France is",
    "The French capital is",
    "The Eiffel Tower is located in the city of",
    "The largest city in France is",
];

/// Negative examples: facts of yet other relations, whose shared coarse neurons are removed
/// (the Python library's negative examples, which in its code remove nothing).
const NEGATIVES: [(&str, &str); 4] = [
    ("The inventor of the telephone was Alexander Graham", "Bell"),
    ("The planet closest to the sun is", "Mercury"),
    ("The author of Harry Potter is J. K.", "Rowling"),
    ("The primary language spoken in Brazil is", "Portuguese"),
];

/// Facts of other relations, with SmolLM2's answers.
const OTHERS: [(&str, &str); 6] = [
    ("The chemical symbol for gold is", "Au"),
    ("The largest planet in the solar system is", "Jupiter"),
    ("Romeo and Juliet was written by William", "Shakespeare"),
    ("The currency of Japan is the", "yen"),
    ("Water is made of hydrogen and", "oxygen"),
    ("The first president of the United States was George", "Washington"),
];

#[test]
fn suppressing_the_neurons_of_france_paris_removes_paris_and_spares_other_facts() {
    let bundle = crate::smollm2::smollm2::<AB>();
    let (model, tok) = (&bundle.model, bundle.tokenizer.as_ref().unwrap());
    let dims = kn_core::KnowledgeModel::dims(model);
    let objective = kn_core::KnowledgeModel::objective(model);
    let encode = |p: &str, t: &str| -> Vec<Query> {
        prompt_queries(tok, &dims, objective, p, t, MultiToken::Expand, false).unwrap().queries
    };
    let related: Vec<Vec<Query>> = PARIS.iter().map(|p| encode(p, "Paris")).collect();
    let negatives: Vec<Vec<Query>> = NEGATIVES.iter().map(|(p, t)| encode(p, t)).collect();
    let cfg = AttributionConfig { steps: 20, batch_size: 20, ..Default::default() };
    let refs: Vec<&[Query]> = related.iter().chain(&negatives).map(Vec::as_slice).collect();
    let coarse_sets: Vec<Vec<NeuronId>> = attribute_many(model, &refs, &cfg)
        .unwrap()
        .iter()
        .map(|a| coarse(a, Threshold::Adaptive(0.3)).unwrap())
        .collect();
    let (per_prompt, per_negative) = coarse_sets.split_at(PARIS.len());
    let mean = |v: &[f32]| v.iter().sum::<f32>() / v.len() as f32;
    let effects = |neurons: &[NeuronId], what: &str| -> (f32, f32, f32) {
        eprintln!("smollm2 ({what}): France → Paris: {} refined neurons {neurons:?}", neurons.len());
        let (mut sup_rel, mut enh_rel, mut sup_unrel, mut enh_unrel) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (p, q) in PARIS.iter().zip(&related) {
            let (s, e) = (suppress(model, q, neurons).unwrap(), enhance(model, q, neurons, 2.0).unwrap());
            eprintln!(
                "smollm2 ({what}): {p:?} → Paris: P {:.4}, suppressed {:.4} ({:+.1} %), enhanced {:.4} ({:+.1} %)",
                s.before.gt_prob,
                s.after.gt_prob,
                100.0 * s.relative_change(),
                e.after.gt_prob,
                100.0 * e.relative_change()
            );
            sup_rel.push(s.relative_change());
            enh_rel.push(e.relative_change());
        }
        for (p, t) in OTHERS {
            let q = encode(p, t);
            let (s, e) = (suppress(model, &q, neurons).unwrap(), enhance(model, &q, neurons, 2.0).unwrap());
            eprintln!(
                "smollm2 ({what}): unrelated {p:?} → {t}: P {:.4}, suppressed {:.4} ({:+.1} %), enhanced {:.4} ({:+.1} %)",
                s.before.gt_prob,
                s.after.gt_prob,
                100.0 * s.relative_change(),
                e.after.gt_prob,
                100.0 * e.relative_change()
            );
            sup_unrel.push(s.relative_change().abs());
            enh_unrel.push(e.relative_change().abs());
        }
        let (r, u, e) = (mean(&sup_rel), mean(&sup_unrel), mean(&enh_rel));
        eprintln!(
            "smollm2 ({what}): suppression: related {:+.1} %, unrelated mean |change| {:.1} %; \
             enhancement: related {:+.1} %, unrelated mean |change| {:.1} %",
            100.0 * r,
            100.0 * u,
            100.0 * e,
            100.0 * mean(&enh_unrel)
        );
        (r, u, e)
    };
    let plain = refine(per_prompt, Sharing::Fixed(0.5), &[], 0.0).unwrap().neurons;
    assert!(!plain.is_empty() && plain.len() <= 20, "{plain:?}");
    let (r, u, e) = effects(&plain, "EAI settings");
    assert!(r <= -0.5, "suppression should remove at least half of P(Paris): {r}");
    assert!(-r >= 2.0 * u, "related change {r} should be at least twice the unrelated |change| {u}");
    assert!(e > 0.0, "enhancement should raise P(Paris): {e}");
    // With negative examples, the neurons also coarse for other facts go, and with them part of
    // the damage to those facts; what stays still removes most of P(Paris).
    let refined = refine(per_prompt, Sharing::Fixed(0.5), per_negative, 0.0).unwrap();
    assert!(!refined.removed_by_negatives.is_empty(), "the negative examples removed nothing");
    eprintln!("smollm2: removed by the negative examples: {:?}", refined.removed_by_negatives);
    let (r2, u2, _) = effects(&refined.neurons, "with negatives");
    assert!(r2 <= -0.5, "suppression with negatives should still remove half of P(Paris): {r2}");
    assert!(u2 < u, "negative examples should spare unrelated facts: {u2} vs {u}");
}
