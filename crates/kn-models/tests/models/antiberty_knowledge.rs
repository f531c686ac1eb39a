//! Knowledge neurons in a real trained model (AntiBERTy, fetched from PyPI): for residues of
//! an antibody sequence, the refined neurons found from several contexts, when suppressed,
//! lower the probability of that residue more than of residues at other positions.

use crate::common::*;
use kn_core::{attribute, coarse, refine, suppress, AttributionConfig, NeuronId, Query, Sharing, Threshold};
use kn_models::{load_dir, TextTokenizer};

const HEAVY: &str = "EVQLVESGGGLVQPGGSLRLSCAASGFTFSSYAMSWVRQAPGKGLEWVS";

/// A context window of the sequence around `pos`, with `pos` masked, as AntiBERTy text.
fn prompt(pos: usize, left: usize, right: usize) -> String {
    let chars: Vec<char> = HEAVY.chars().collect();
    let lo = pos.saturating_sub(left);
    let hi = (pos + right + 1).min(chars.len());
    (lo..hi).map(|i| if i == pos { "[MASK]".to_string() } else { chars[i].to_string() }).collect::<Vec<_>>().join(" ")
}

#[test]
fn suppressing_refined_neurons_of_a_residue_hurts_it_more_than_other_residues() {
    let dir = test_models().join("antiberty-model");
    let ignore: Vec<String> = ["cls.species.", "cls.chain.", "cls.graft."].iter().map(|s| s.to_string()).collect();
    let (model, _) = load_dir::<AB>(&dir, &ignore, &Default::default()).unwrap();
    let tok = TextTokenizer::from_dir(&dir).unwrap();
    let cfg = AttributionConfig { steps: 10, batch_size: 10, ..Default::default() };
    let facts = [10usize, 18, 26, 33, 40];
    let contexts = [(12, 12), (20, 6), (6, 20)];
    let mut refined_sets = Vec::new();
    let mut fact_queries: Vec<Vec<Vec<Query>>> = Vec::new();
    for &pos in &facts {
        let residue = HEAVY.chars().nth(pos).unwrap().to_string();
        let qs: Vec<Vec<Query>> =
            contexts.iter().map(|&(l, r)| queries(&model, &tok, &prompt(pos, l, r), &residue)).collect();
        let per_prompt: Vec<Vec<NeuronId>> = qs
            .iter()
            .map(|q| coarse(&attribute(&model, q, &cfg).unwrap(), Threshold::Adaptive(0.3)).unwrap())
            .collect();
        let r = refine(&per_prompt, Sharing::Fixed(0.5), &[], 0.0).unwrap();
        eprintln!("antiberty: residue {residue} at {pos}: {} refined neurons {:?}", r.neurons.len(), r.neurons);
        refined_sets.push(r.neurons);
        fact_queries.push(qs);
    }
    let (mut related, mut unrelated) = (Vec::new(), Vec::new());
    for (i, neurons) in refined_sets.iter().enumerate() {
        let j = (i + 1) % facts.len();
        for q in &fact_queries[i] {
            related.push(suppress(&model, q, neurons).unwrap().relative_change());
        }
        for q in &fact_queries[j] {
            unrelated.push(suppress(&model, q, neurons).unwrap().relative_change());
        }
    }
    let mean = |v: &[f32]| v.iter().sum::<f32>() / v.len() as f32;
    let (r, u) = (mean(&related), mean(&unrelated));
    eprintln!(
        "antiberty: suppression changes the residue's probability by {:.2}% (related) vs {:.2}% (unrelated)",
        100.0 * r,
        100.0 * u
    );
    assert!(refined_sets.iter().any(|s| !s.is_empty()), "no refined neurons at all");
    assert!(r < u, "related {r} should drop more than unrelated {u}");
    assert!(r < 0.0, "related suppression should lower the probability: {r}");
}
