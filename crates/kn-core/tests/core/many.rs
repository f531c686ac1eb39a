//! Several prompts in one schedule ([`attribute_many`]) give exactly what each gives alone,
//! whatever the number of pool threads running their passes concurrently.

use burn::backend::{Autodiff, NdArray};
use kn_core::planted::{PlantedModel, PlantedSpec};
use kn_core::{attribute, attribute_many, attribute_many_observed, Attribution, AttributionConfig, KnError, Query};

type B = Autodiff<NdArray<f32>>;

/// Six one-query prompts of two facts and one prompt whose scores average two queries.
fn prompts(model: &PlantedModel<B>) -> Vec<Vec<Query>> {
    let mut out = Vec::new();
    for f in 0..2 {
        let object = model.facts[f].object;
        for (ids, pos) in model.prompts(f, 3) {
            out.push(vec![Query { ids, positions: vec![pos], target_ids: vec![object] }]);
        }
    }
    let pair: Vec<Query> = out[0].iter().chain(out[4].iter()).cloned().collect();
    out.push(pair);
    out
}

fn same(a: &Attribution, b: &Attribution, what: &str) {
    assert_eq!(a.scores, b.scores, "{what}: scores");
    assert_eq!(a.token_probs, b.token_probs, "{what}: token probabilities");
    let comp = |x: &Attribution| {
        x.completeness.as_ref().map(|c| c.iter().map(|c| (c.f_full, c.f_zero, c.sum_scores)).collect::<Vec<_>>())
    };
    assert_eq!(comp(a), comp(b), "{what}: completeness");
}

#[test]
fn many_prompts_at_once_equal_each_prompt_alone_on_any_pool() {
    let model = PlantedModel::<B>::new(PlantedSpec::default(), &Default::default());
    let prompts = prompts(&model);
    let refs: Vec<&[Query]> = prompts.iter().map(Vec::as_slice).collect();
    // One layer per pass: many passes, finishing in an order that depends on the threads.
    let cfg = AttributionConfig { steps: 8, batch_size: 4, max_rows_per_pass: 1, ..Default::default() };
    let alone: Vec<Attribution> = prompts.iter().map(|q| attribute(&model, q, &cfg).unwrap()).collect();
    for threads in [1, 2, 3] {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        let together = pool.install(|| attribute_many(&model, &refs, &cfg)).unwrap();
        assert_eq!(together.len(), prompts.len());
        for (i, (a, b)) in alone.iter().zip(&together).enumerate() {
            same(a, b, &format!("prompt {i}, {threads} threads"));
        }
    }
}

#[test]
fn every_layer_of_every_query_is_reported_once() {
    let model = PlantedModel::<B>::new(PlantedSpec::default(), &Default::default());
    let prompts = prompts(&model);
    let refs: Vec<&[Query]> = prompts.iter().map(Vec::as_slice).collect();
    let cfg = AttributionConfig { steps: 4, batch_size: 4, max_rows_per_pass: 1, ..Default::default() };
    let n_layers = kn_core::KnowledgeModel::dims(&model).n_layers;
    let mut seen = vec![0usize; n_layers];
    attribute_many_observed(&model, &refs, &cfg, &mut |l| seen[l] += 1).unwrap();
    let queries: usize = prompts.iter().map(Vec::len).sum();
    assert_eq!(seen, vec![queries; n_layers]);
}

#[test]
fn a_bad_prompt_fails_the_call_without_panicking() {
    let model = PlantedModel::<B>::new(PlantedSpec::default(), &Default::default());
    let mut prompts = prompts(&model);
    let vocab = kn_core::KnowledgeModel::dims(&model).vocab_size as u32;
    prompts[2][0].target_ids = vec![vocab + 5];
    let refs: Vec<&[Query]> = prompts.iter().map(Vec::as_slice).collect();
    let err = attribute_many(&model, &refs, &AttributionConfig::default()).unwrap_err();
    assert!(err.to_string().contains(&(vocab + 5).to_string()), "{err}");
    let empty: Vec<&[Query]> = vec![&prompts[0], &[]];
    assert!(matches!(attribute_many(&model, &empty, &AttributionConfig::default()), Err(KnError::Empty { .. })));
}

/// Largest difference between two attributions' scores, relative to the largest score.
fn rel_diff(a: &Attribution, b: &Attribution) -> f32 {
    let max = a.scores.iter().flatten().fold(0.0f32, |m, x| m.max(x.abs()));
    let d = a.scores.iter().flatten().zip(b.scores.iter().flatten()).fold(0.0f32, |m, (x, y)| m.max((x - y).abs()));
    d / max.max(f32::MIN_POSITIVE)
}

#[test]
fn stacked_prompts_give_the_scores_of_each_prompt_alone() {
    let model = PlantedModel::<B>::new(PlantedSpec::default(), &Default::default());
    let prompts = prompts(&model);
    let refs: Vec<&[Query]> = prompts.iter().map(Vec::as_slice).collect();
    let cfg = AttributionConfig { steps: 8, batch_size: 4, ..Default::default() };
    let alone: Vec<Attribution> = prompts.iter().map(|q| attribute(&model, q, &cfg).unwrap()).collect();
    // Stacks of 2, 3 and all; one layer per pass and the default budget.
    for (stack, budget) in [(2, 4096), (3, 1), (8, 1 << 20)] {
        let stacked = AttributionConfig { max_stacked_prompts: stack, max_rows_per_pass: budget, ..cfg };
        for threads in [1, 2] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            let together = pool.install(|| attribute_many(&model, &refs, &stacked)).unwrap();
            for (i, (a, b)) in alone.iter().zip(&together).enumerate() {
                let d = rel_diff(a, b);
                println!("stack {stack}, budget {budget}, {threads} threads, prompt {i}: {d:.2e} relative");
                assert!(d <= 1e-6, "prompt {i}, stack {stack}: scores differ by {d:e} relative (bound 1e-6)");
                assert_eq!(a.token_probs, b.token_probs, "prompt {i}: the unmodified pass is each prompt's own");
                let (ca, cb) = (a.completeness.as_ref().unwrap(), b.completeness.as_ref().unwrap());
                for (x, y) in ca.iter().zip(cb) {
                    assert!((x.f_zero - y.f_zero).abs() <= 1e-6 * x.f_zero.abs().max(1e-3), "baseline objective");
                    assert_eq!(x.f_full, y.f_full);
                }
            }
        }
        let n_layers = kn_core::KnowledgeModel::dims(&model).n_layers;
        let mut seen = vec![0usize; n_layers];
        attribute_many_observed(&model, &refs, &stacked, &mut |l| seen[l] += 1).unwrap();
        assert_eq!(
            seen,
            vec![prompts.iter().map(Vec::len).sum::<usize>(); n_layers],
            "every layer of every query once"
        );
    }
}

#[test]
fn any_grouping_of_the_layers_gives_the_scores_of_one_layer_per_pass() {
    // Six layers: budgets between one layer's tail and all six group them in every count from
    // 6 to 1, shallow layers with deep ones ({0, 5}, {1, 4}, {2, 3} at 3 groups), so the
    // wavefront runs tails that start blocks apart.
    let spec = PlantedSpec { n_layers: 6, ..PlantedSpec::default() };
    let model = PlantedModel::<B>::new(spec, &Default::default());
    let prompts = prompts(&model);
    let cfg = AttributionConfig { steps: 8, batch_size: 4, max_rows_per_pass: 1, ..Default::default() };
    for (i, q) in prompts.iter().enumerate() {
        let alone = attribute(&model, q, &cfg).unwrap();
        // Rows per block of one layer's tail: the sequence times the batch.
        let unit = q[0].ids.len() * cfg.batch_size;
        let mut worst = 0.0f32;
        for units in 1..=21 {
            let grouped = AttributionConfig { max_rows_per_pass: units * unit, ..cfg };
            let together = attribute(&model, q, &grouped).unwrap();
            let d = rel_diff(&alone, &together);
            worst = worst.max(d);
            assert!(d <= 1e-6, "prompt {i}, budget {units} tails: scores differ by {d:e} relative (bound 1e-6)");
            assert_eq!(alone.token_probs, together.token_probs);
        }
        println!("prompt {i}: budgets of 1-21 one-block tails against one layer per pass: {worst:.2e} relative");
    }
}
