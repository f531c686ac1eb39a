//! The optimised integrated gradients (layers below l computed once, head at the target rows,
//! causal models running only the last row against cached keys/values) give the scores of the
//! straightforward computation: a full forward pass per batch from the embeddings, with a hook
//! replacing the layer's activations. Tolerance: `TOL.optimised_rel`, relative to the largest score.

use crate::common::*;
use burn::tensor::{Tensor, TensorData};
use kn_core::{attribute, forward_hooked, AttributionConfig, FfnHook, KnowledgeModel, ModelInput, Query};
use kn_models::load_dir;

/// Replaces layer `layer`'s activations at `pos` with `x` (`[k, d_ff]`), for a batch of `k`.
struct Put {
    layer: usize,
    pos: usize,
    x: Tensor<AB, 2>,
}

impl FfnHook<AB> for Put {
    fn on_ffn(&mut self, layer: usize, act: Tensor<AB, 3>) -> Tensor<AB, 3> {
        let d_ff = act.dims()[2];
        let k = self.x.dims()[0];
        let act = if act.dims()[0] == 1 && k > 1 { act.repeat_dim(0, k) } else { act };
        if layer != self.layer {
            return act;
        }
        act.slice_assign([0..k, self.pos..self.pos + 1, 0..d_ff], self.x.clone().reshape([k, 1, d_ff]))
    }
}

/// Plain IG with EAI's rule, one full forward per batch.
fn plain_scores(model: &impl KnowledgeModel<AB>, q: &Query, steps: usize) -> Vec<f32> {
    let dims = model.dims();
    let dev = Default::default();
    let input = ModelInput::<AB>::from_ids(&q.ids, &dev);
    let (pos, target) = (q.positions[0], q.target_ids[0] as usize);
    let mut cap = kn_core::Capture::default();
    forward_hooked(model, &input, &mut cap);
    let mut out = Vec::new();
    for l in 0..dims.n_layers {
        let a = values(cap.acts[l].clone().slice([0..1, pos..pos + 1, 0..dims.d_ff]).inner());
        let alphas: Vec<f32> = (0..steps).map(|i| i as f32 / (steps - 1) as f32).collect();
        let scaled: Vec<f32> = alphas.iter().flat_map(|al| a.iter().map(move |v| v * al)).collect();
        let x = Tensor::<AB, 2>::from_data(TensorData::new(scaled, [steps, dims.d_ff]), &dev).require_grad();
        // Each batch row is its own sequence: the input broadcasts over the batch.
        let logits = forward_hooked(model, &input, &mut Put { layer: l, pos, x: x.clone() });
        let v = dims.vocab_size;
        // kn-core's softmax (blocked normaliser): burn's one-pass sum alone is off by 1e-4 over
        // SmolLM2's 49,152 tokens.
        let p = kn_core::predict::log_softmax(logits.slice([0..steps, pos..pos + 1, 0..v]).reshape([steps, v]))
            .exp()
            .slice([0..steps, target..target + 1]);
        let grads = p.sum().backward();
        let g = values(x.grad(&grads).unwrap().sum_dim(0));
        out.extend(a.iter().zip(&g).map(|(ai, gi)| ai * gi / steps as f32));
    }
    out
}

fn check(name: &str, q: Query) {
    let (model, _) = load_dir::<AB>(&fixture(name), &[], &Default::default()).unwrap();
    let steps = 8;
    let cfg = AttributionConfig { steps, batch_size: 4, ..Default::default() };
    let fast_run = attribute(&model, std::slice::from_ref(&q), &cfg).unwrap();
    let fast: Vec<f32> = fast_run.scores.concat();
    let slow_cfg = AttributionConfig { reuse_prefix: false, ..cfg };
    let slow_run = attribute(&model, std::slice::from_ref(&q), &slow_cfg).unwrap();
    let cached_only: Vec<f32> = slow_run.scores.concat();
    let plain = plain_scores(&model, &q, steps);
    let max = plain.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    let (d1, d2) = (max_abs_diff(&fast, &plain), max_abs_diff(&cached_only, &plain));
    assert!(max > 0.0, "{name}: all scores are zero");
    within(&format!("{name}: optimised vs plain"), d1 / max, TOL.optimised_rel);
    within(&format!("{name}: without prefix reuse vs plain"), d2 / max, TOL.optimised_rel);
    // Layers' tails stacked in groups of other sizes give the same scores. Layer l of these
    // 3-layer models costs 4 points x tail rows x (3 - l) blocks: budget 1 runs each layer
    // alone; 20 groups layers {0, 1} then {2} on the causal path (1 tail row); 100 groups
    // {0} then {1, 2} on the row-wise paths (6-8 rows) and all three on the causal path.
    for budget in [1, 20, 100] {
        let grouped = AttributionConfig { max_rows_per_pass: budget, ..cfg };
        let g = attribute(&model, std::slice::from_ref(&q), &grouped).unwrap().scores.concat();
        let d = max_abs_diff(&g, &plain);
        within(&format!("{name}, max_rows_per_pass {budget}: vs plain"), d / max, TOL.optimised_rel);
    }
    // The baseline and unmodified objectives (completeness) agree with the full-sequence path.
    let (fc, sc) = (fast_run.completeness.unwrap(), slow_run.completeness.unwrap());
    for (a, b) in fc.iter().zip(&sc) {
        for (x, y) in [(a.f_full, b.f_full), (a.f_zero, b.f_zero)] {
            let scale = x.abs().max(y.abs()).max(1e-6);
            within(&format!("{name}: objective, cached vs full sequence"), (x - y).abs() / scale, TOL.optimised_rel);
        }
    }
}

#[test]
fn bert_optimised_scores_equal_the_plain_computation() {
    check("tiny-bert", Query { ids: vec![2, 5, 22, 8, 26, 9, 4, 3], positions: vec![6], target_ids: vec![25] });
}

#[test]
fn gpt2_optimised_scores_equal_the_plain_computation() {
    check("tiny-gpt2", Query { ids: vec![5, 17, 33, 2, 80, 41], positions: vec![5], target_ids: vec![12] });
}

#[test]
fn gpt_neo_optimised_scores_equal_the_plain_computation() {
    // Longer than the local window (4), so the cached keys are cut by the window.
    check(
        "tiny-gpt-neo",
        Query { ids: vec![5, 17, 33, 2, 80, 41, 7, 9, 11], positions: vec![8], target_ids: vec![12] },
    );
}

#[test]
fn bert_two_masks_optimised_scores_equal_the_plain_computation() {
    // Two target rows: layer l's FFN and the last block run on both rows only.
    // The plain reference above handles one position; the full-sequence path (no reuse) is the
    // reference here, itself checked against it in the single-position tests.
    let (model, _) = load_dir::<AB>(&fixture("tiny-bert"), &[], &Default::default()).unwrap();
    let q = Query { ids: vec![2, 5, 4, 8, 26, 9, 4, 3], positions: vec![2, 6], target_ids: vec![25, 11] };
    let cfg = AttributionConfig { steps: 8, batch_size: 4, ..Default::default() };
    let fast = attribute(&model, std::slice::from_ref(&q), &cfg).unwrap().scores.concat();
    let full_cfg = AttributionConfig { reuse_prefix: false, ..cfg };
    let full = attribute(&model, std::slice::from_ref(&q), &full_cfg).unwrap().scores.concat();
    let max = full.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    let d = max_abs_diff(&fast, &full);
    assert!(max > 0.0, "all scores are zero");
    within("tiny-bert, two masks: optimised vs full sequence", d / max, TOL.optimised_rel);
}

#[test]
fn gradient_times_activation_from_layer_zeros_tail_equals_each_layers_own_tail() {
    // The point α = 1 alone: with prefix reuse, layer 0's tail gives every layer above it its
    // gradient there (zero leaves added to each block's activations) and their own tails do
    // not run; without it, each layer's tail runs the whole sequence. Row-wise (BERT, one and
    // two masks; GPT-2 at an inner position), causal (GPT-2, Llama's rotary, grouped heads),
    // each layer alone (budget 1) and grouped (layer 0 with others).
    use kn_core::Method;
    let cases = [
        ("tiny-bert", Query { ids: vec![2, 5, 22, 8, 26, 9, 4, 3], positions: vec![6], target_ids: vec![25] }),
        ("tiny-bert", Query { ids: vec![2, 5, 4, 8, 26, 9, 4, 3], positions: vec![2, 6], target_ids: vec![25, 11] }),
        ("tiny-gpt2", Query { ids: vec![5, 17, 33, 2, 80, 41], positions: vec![5], target_ids: vec![12] }),
        ("tiny-gpt2", Query { ids: vec![5, 17, 33, 2, 80, 41], positions: vec![3], target_ids: vec![12] }),
        ("tiny-llama", Query { ids: vec![5, 17, 33, 2, 80, 41, 7], positions: vec![6], target_ids: vec![12] }),
    ];
    for (name, q) in cases {
        let (model, _) = load_dir::<AB>(&fixture(name), &[], &Default::default()).unwrap();
        let cfg = AttributionConfig { method: Method::GradientTimesActivation, ..Default::default() };
        let own = AttributionConfig { reuse_prefix: false, ..cfg };
        let want = attribute(&model, std::slice::from_ref(&q), &own).unwrap().scores.concat();
        let max = want.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        assert!(max > 0.0, "{name}: all scores are zero");
        for budget in [1, 4096] {
            let fast = AttributionConfig { max_rows_per_pass: budget, ..cfg };
            let got = attribute(&model, std::slice::from_ref(&q), &fast).unwrap().scores.concat();
            let d = max_abs_diff(&got, &want);
            within(
                &format!("{name} {:?}, budget {budget}: grad x act, layer 0's tail vs own", q.positions),
                d / max,
                TOL.optimised_rel,
            );
        }
    }
}

#[test]
fn gpt2_inner_position_optimised_scores_equal_the_plain_computation() {
    // A causal query read before the last position takes the row-wise path with the causal mask.
    check("tiny-gpt2", Query { ids: vec![5, 17, 33, 2, 80, 41], positions: vec![3], target_ids: vec![12] });
}

#[test]
fn llama_optimised_scores_equal_the_plain_computation() {
    // Rotary positions on the cached prefix keys, grouped-query attention, gated FFN.
    check("tiny-llama", Query { ids: vec![5, 17, 33, 2, 80, 41, 7], positions: vec![6], target_ids: vec![12] });
}

#[test]
fn mistral_optimised_scores_equal_the_plain_computation() {
    // Longer than the sliding window (4).
    check(
        "tiny-mistral",
        Query { ids: vec![5, 17, 33, 2, 60, 41, 7, 9, 11], positions: vec![8], target_ids: vec![12] },
    );
}

#[test]
fn llama_inner_position_optimised_scores_equal_the_plain_computation() {
    check("tiny-llama", Query { ids: vec![5, 17, 33, 2, 80, 41, 7], positions: vec![3], target_ids: vec![12] });
}

#[test]
fn smollm2_optimised_scores_equal_the_plain_computation() {
    // A real Llama-family model (30 layers, GQA 9/3, RoPE θ 1e5): the causal fast path (last
    // row against the cached, rotated prefix keys) against a full forward per batch.
    let model = crate::smollm2::smollm2::<AB>();
    let tok = model.tokenizer.as_ref().unwrap();
    let ids = tok.encode("The capital of France is", true).unwrap();
    let target = tok.target_ids(" Paris").unwrap()[0];
    let q = Query { positions: vec![ids.len() - 1], ids, target_ids: vec![target] };
    let steps = 8;
    let cfg = AttributionConfig { steps, batch_size: 8, ..Default::default() };
    let fast = attribute(&model.model, std::slice::from_ref(&q), &cfg).unwrap().scores.concat();
    let plain = plain_scores(&model.model, &q, steps);
    let max = plain.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    assert!(max > 0.0, "all scores are zero");
    within("smollm2: optimised vs plain", max_abs_diff(&fast, &plain) / max, TOL.optimised_rel);
}

/// Prompts of one length stacked into one pass (`max_stacked_prompts`) give each prompt's own
/// scores: several prompts of `n` tokens read at `positions` (different ids, different
/// targets), and one of another length that stacks with nothing. Tolerance:
/// `TOL.optimised_rel`, relative to the prompt's largest score.
fn check_stacked(name: &str, n: usize, positions: &[usize]) {
    let (model, _) = load_dir::<AB>(&fixture(name), &[], &Default::default()).unwrap();
    let mut prompts: Vec<Vec<Query>> = (0..4u32)
        .map(|p| {
            let ids: Vec<u32> = (0..n as u32).map(|i| 5 + (i * 7 + p * 13) % 60).collect();
            let target_ids = positions.iter().map(|&j| 10 + (j as u32 + 3 * p) % 40).collect();
            vec![Query { ids, positions: positions.to_vec(), target_ids }]
        })
        .collect();
    prompts.push(vec![Query { ids: vec![5, 9, 14, 21, 30], positions: vec![4], target_ids: vec![17] }]);
    let refs: Vec<&[Query]> = prompts.iter().map(Vec::as_slice).collect();
    let cfg = AttributionConfig { steps: 8, batch_size: 4, ..Default::default() };
    let alone: Vec<_> = prompts.iter().map(|q| attribute(&model, q, &cfg).unwrap()).collect();
    // Stacks of 3 (then the fourth alone) and of all four; the default budget and a larger one.
    for (stack, budget) in [(3, 4096), (4, 1 << 20)] {
        let stacked = AttributionConfig { max_stacked_prompts: stack, max_rows_per_pass: budget, ..cfg };
        let together = kn_core::attribute_many(&model, &refs, &stacked).unwrap();
        for (i, (a, b)) in alone.iter().zip(&together).enumerate() {
            let (x, y) = (a.scores.concat(), b.scores.concat());
            let max = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            assert!(max > 0.0, "{name}: prompt {i} has all scores zero");
            let what = format!("{name}, stacks of {stack}, prompt {i}: stacked vs alone");
            within(&what, max_abs_diff(&x, &y) / max, TOL.optimised_rel);
            assert_eq!(a.token_probs, b.token_probs, "{what}: the unmodified pass is the prompt's own");
            let (ca, cb) = (a.completeness.as_ref().unwrap(), b.completeness.as_ref().unwrap());
            let worst = ca.iter().zip(cb).map(|(u, v)| (u.f_zero - v.f_zero).abs() / u.f_zero.abs().max(1e-6));
            within(&format!("{what}: baseline objectives"), worst.fold(0.0, f32::max), TOL.optimised_rel);
        }
    }
}

#[test]
fn stacked_prompts_give_each_prompts_scores_on_every_architecture() {
    // Masked LM (one and two target rows), causal LMs on the fast path (last row against the
    // stacked prefixes: GPT-2, GPT-Neo past its local window, Llama with rotary keys and
    // grouped queries, Mistral past its sliding window) and a causal query read before the
    // last position (the row-wise path with the causal mask).
    check_stacked("tiny-bert", 8, &[6]);
    check_stacked("tiny-bert", 8, &[2, 6]);
    check_stacked("tiny-gpt2", 6, &[5]);
    check_stacked("tiny-gpt-neo", 9, &[8]);
    check_stacked("tiny-llama", 7, &[6]);
    check_stacked("tiny-mistral", 9, &[8]);
    check_stacked("tiny-llama", 7, &[3]);
}

/// IG's baseline objective (the layer's activations at the target zeroed) is read off the
/// gradient pass when a quadrature point is `α = 0` (EAI's rule, the trapezoid) and has a pass
/// of its own otherwise (midpoint): both equal the plain computation, a full forward pass with
/// the activations zeroed by a hook, within `TOL.optimised_rel` relative.
#[test]
fn the_baseline_objective_equals_a_plain_zeroed_pass_with_and_without_an_alpha_zero_point() {
    use kn_core::Quadrature;
    let cases = [
        ("tiny-bert", Query { ids: vec![2, 5, 22, 8, 26, 9, 4, 3], positions: vec![6], target_ids: vec![25] }),
        ("tiny-gpt2", Query { ids: vec![5, 17, 33, 2, 80, 41], positions: vec![5], target_ids: vec![12] }),
    ];
    for (name, q) in cases {
        let (model, _) = load_dir::<AB>(&fixture(name), &[], &Default::default()).unwrap();
        let dims = model.dims();
        let dev = Default::default();
        let input = ModelInput::<AB>::from_ids(&q.ids, &dev);
        let (pos, target) = (q.positions[0], q.target_ids[0] as usize);
        let plain: Vec<f32> = (0..dims.n_layers)
            .map(|l| {
                let zero = Tensor::<AB, 2>::zeros([1, dims.d_ff], &dev);
                let logits = forward_hooked(&model, &input, &mut Put { layer: l, pos, x: zero });
                let v = dims.vocab_size;
                let p = kn_core::predict::log_softmax(logits.slice([0..1, pos..pos + 1, 0..v]).reshape([1, v])).exp();
                values(p.slice([0..1, target..target + 1]).inner())[0]
            })
            .collect();
        for quadrature in [Quadrature::EaiLinspace, Quadrature::Trapezoid, Quadrature::Midpoint] {
            let cfg = AttributionConfig { steps: 6, batch_size: 3, quadrature, ..Default::default() };
            let run = attribute(&model, std::slice::from_ref(&q), &cfg).unwrap();
            for (l, (c, want)) in run.completeness.unwrap().iter().zip(&plain).enumerate() {
                let rel = (c.f_zero - want).abs() / want.abs().max(1e-6);
                within(
                    &format!("{name} {quadrature:?} layer {l}: baseline objective vs plain"),
                    rel,
                    TOL.optimised_rel,
                );
            }
        }
    }
}
