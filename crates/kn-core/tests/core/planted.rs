//! End-to-end proof on a model whose knowledge is planted in known neurons: integrated
//! gradients + refinement recover them (precision and recall ≥ 0.9), suppressing them removes
//! the fact far more than an unrelated one, enhancing raises it.

use std::collections::BTreeSet;

use burn::backend::{Autodiff, NdArray};
use kn_core::planted::{PlantedModel, PlantedSpec};
use kn_core::{
    attribute, coarse, enhance, refine, suppress, AttributionConfig, KnowledgeModel, NeuronId, Query, Sharing,
    Threshold,
};

type B = Autodiff<NdArray<f32>>;

fn queries(model: &PlantedModel<B>, f: usize, n: usize) -> Vec<Vec<Query>> {
    let object = model.facts[f].object;
    model
        .prompts(f, n)
        .into_iter()
        .map(|(ids, pos)| vec![Query { ids, positions: vec![pos], target_ids: vec![object] }])
        .collect()
}

fn refined(model: &PlantedModel<B>, f: usize) -> Vec<NeuronId> {
    let cfg = AttributionConfig::default();
    let per_prompt: Vec<Vec<NeuronId>> = queries(model, f, 6)
        .iter()
        .map(|q| coarse(&attribute(model, q, &cfg).unwrap(), Threshold::Adaptive(0.3)).unwrap())
        .collect();
    refine(&per_prompt, Sharing::Fixed(0.5), &[], 0.0).unwrap().neurons
}

#[test]
fn refined_neurons_recover_the_planted_ones() {
    let model = PlantedModel::<B>::new(PlantedSpec::default(), &Default::default());
    let (mut tp, mut fp, mut fn_) = (0usize, 0usize, 0usize);
    for f in 0..model.facts.len() {
        let found: BTreeSet<NeuronId> = refined(&model, f).into_iter().collect();
        let truth: BTreeSet<NeuronId> = model.facts[f].neurons.iter().copied().collect();
        tp += found.intersection(&truth).count();
        fp += found.difference(&truth).count();
        fn_ += truth.difference(&found).count();
    }
    let precision = tp as f32 / (tp + fp) as f32;
    let recall = tp as f32 / (tp + fn_) as f32;
    eprintln!("planted: precision {precision:.3}, recall {recall:.3} (tp {tp}, fp {fp}, fn {fn_})");
    assert!(precision >= 0.9 && recall >= 0.9, "precision {precision}, recall {recall}");
}

#[test]
fn suppressing_planted_neurons_removes_the_fact_not_others_and_enhancing_raises_it() {
    let model = PlantedModel::<B>::new(PlantedSpec::default(), &Default::default());
    let (mut related, mut unrelated, mut enhanced) = (Vec::new(), Vec::new(), Vec::new());
    for f in 0..model.facts.len() {
        let neurons = model.facts[f].neurons.clone();
        let g = (f + 1) % model.facts.len();
        for q in queries(&model, f, 3) {
            related.push(suppress(&model, &q, &neurons).unwrap().relative_change());
            enhanced.push(enhance(&model, &q, &neurons, 2.0).unwrap().relative_change());
        }
        for q in queries(&model, g, 3) {
            unrelated.push(suppress(&model, &q, &neurons).unwrap().relative_change());
        }
    }
    let mean = |v: &[f32]| v.iter().sum::<f32>() / v.len() as f32;
    let (r, u, e) = (mean(&related), mean(&unrelated), mean(&enhanced));
    eprintln!(
        "planted: suppress related {:.1}%, unrelated {:.1}%, enhance related {:+.1}%",
        100.0 * r,
        100.0 * u,
        100.0 * e
    );
    assert!(r < -0.5, "suppression should remove the fact: {r}");
    assert!(u.abs() < 0.05, "suppression should leave other facts alone: {u}");
    assert!(e > 0.05, "enhancement should raise the fact: {e}");
}

#[test]
fn a_cancelled_attribution_stops_with_a_typed_error_and_an_uncancelled_one_is_unchanged() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let model = PlantedModel::<B>::new(PlantedSpec::default(), &Default::default());
    let cfg = AttributionConfig::default();
    // Cancelled from the start: no pass runs.
    let q = &queries(&model, 0, 3);
    let all: Vec<&[Query]> = q.iter().map(Vec::as_slice).collect();
    let r = kn_core::attribute_many_cancellable(&model, &all, &cfg, &mut |_| panic!("a pass ran"), &|| true);
    assert_eq!(r.unwrap_err(), kn_core::KnError::Cancelled);
    // Cancelled after two passes have started, with many more passes than worker threads: the
    // passes already running finish, no new one starts. (Counting the questions, not the
    // finished layers, keeps this deterministic on a loaded machine, where workers may start
    // several passes before the calling thread hears of the first one.)
    let many = &queries(&model, 0, 24);
    let all_many: Vec<&[Query]> = many.iter().map(Vec::as_slice).collect();
    let (asked, layers) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let r = kn_core::attribute_many_cancellable(
        &model,
        &all_many,
        &cfg,
        &mut |_| {
            layers.fetch_add(1, Ordering::Relaxed);
        },
        &|| asked.fetch_add(1, Ordering::Relaxed) >= 2,
    );
    assert_eq!(r.unwrap_err(), kn_core::KnError::Cancelled);
    let total = 24 * model.dims().n_layers;
    let done = layers.load(Ordering::Relaxed);
    eprintln!("cancelled after {done} of {total} layer results");
    assert!(done <= 2 * model.dims().n_layers, "it ran {done} of {total}: more than the two passes started");
    // Never cancelled: the very scores of attribute_many.
    let a = kn_core::attribute_many_cancellable(&model, &all, &cfg, &mut |_| {}, &|| false).unwrap();
    let b = kn_core::attribute_many(&model, &all, &cfg).unwrap();
    assert_eq!(
        a.iter().map(|x| x.scores.clone()).collect::<Vec<_>>(),
        b.iter().map(|x| x.scores.clone()).collect::<Vec<_>>()
    );
}
