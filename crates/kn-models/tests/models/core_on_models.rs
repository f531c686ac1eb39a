//! kn-core on the real architectures: invariants of hooks and weight edits, IG completeness,
//! multi-token targets, and the refined neurons of EleutherAI's library.

use crate::common::*;
use kn_core::{
    attribute, coarse, edit, erase, forward_hooked, measure, refine, suppress, AttributionConfig, Capture, EditRule,
    FfnHook, Fill, KnowledgeModel, ModelInput, NeuronId, NoHook, Quadrature, Query, Sharing, Threshold,
};
use kn_models::{load_dir, TextTokenizer, Transformer};

fn tiny(name: &str) -> Transformer<AB> {
    load_dir::<AB>(&fixture(name), &[], &Default::default()).expect("fixture").0
}

struct Replace(Vec<burn::tensor::Tensor<AB, 3>>);

impl FfnHook<AB> for Replace {
    fn on_ffn(&mut self, layer: usize, _act: burn::tensor::Tensor<AB, 3>) -> burn::tensor::Tensor<AB, 3> {
        self.0[layer].clone()
    }
}

#[test]
fn hooks_that_change_nothing_change_nothing() {
    for name in ["tiny-bert", "tiny-gpt2", "tiny-gpt-neo", "tiny-llama", "tiny-mistral", "tiny-qwen2"] {
        let model = tiny(name);
        let input = ModelInput::<AB>::from_ids(&[3, 5, 7, 9, 11], &Default::default());
        let plain = values(model.forward(&input).inner());
        let mut cap = Capture::default();
        let captured = values(forward_hooked(&model, &input, &mut cap).inner());
        assert_eq!(plain, captured, "{name}: Capture changed the output");
        let replaced = values(forward_hooked(&model, &input, &mut Replace(cap.acts)).inner());
        assert_eq!(plain, replaced, "{name}: replacing with the captured activations changed the output");
        let q = vec![Query { ids: vec![3, 5, 7, 9, 11], positions: vec![4], target_ids: vec![2] }];
        let e = suppress(&model, &q, &[]).unwrap();
        assert_eq!(e.before, e.after, "{name}: suppressing no neuron changed the prediction");
    }
}

#[test]
fn erase_and_edit_undo_restore_weights_bit_exactly() {
    for name in ["tiny-bert", "tiny-gpt2", "tiny-gpt-neo", "tiny-llama", "tiny-mistral", "tiny-qwen2"] {
        let mut model = tiny(name);
        let neurons = [NeuronId::new(0, 3), NeuronId::new(1, 7), NeuronId::new(1, 8)];
        let before: Vec<Vec<f32>> = (0..3).map(|l| values(model.ffn_out_weight(l).inner())).collect();
        let q = vec![Query { ids: vec![3, 5, 7, 4, 11], positions: vec![4], target_ids: vec![2] }];
        let p0 = measure(&model, &q, &mut NoHook).unwrap();
        let undo = erase(&mut model, &neurons, Fill::Zero).unwrap();
        let erased = values(model.ffn_out_weight(1).inner());
        let d = model.dims().d_model;
        assert!(erased[7 * d..9 * d].iter().all(|&x| x == 0.0), "{name}: rows not erased");
        assert_ne!(measure(&model, &q, &mut NoHook).unwrap(), p0, "{name}: erasing had no effect");
        undo.undo(&mut model);
        let undo = edit(&mut model, &neurons, 5, 6, EditRule::paper()).unwrap();
        undo.undo(&mut model);
        let undo = erase(&mut model, &neurons, Fill::Token(1)).unwrap();
        undo.undo(&mut model);
        let after: Vec<Vec<f32>> = (0..3).map(|l| values(model.ffn_out_weight(l).inner())).collect();
        let bits = |w: &Vec<Vec<f32>>| w.iter().flatten().map(|x| x.to_bits()).collect::<Vec<u32>>();
        assert_eq!(bits(&before), bits(&after), "{name}: undo did not restore the weights bit-exactly");
        assert_eq!(measure(&model, &q, &mut NoHook).unwrap(), p0);
        assert!(erase(&mut model, &[NeuronId::new(9, 0)], Fill::Zero).is_err(), "out-of-range layer accepted");
    }
}

#[test]
fn completeness_gap_shrinks_as_steps_grow() {
    let model = tiny("tiny-bert");
    let tok = TextTokenizer::from_dir(&fixture("tiny-bert")).unwrap();
    let q = queries(&model, &tok, "the capital of france is [MASK] .", "paris");
    let gap = |steps: usize| {
        let cfg =
            AttributionConfig { steps, batch_size: steps, quadrature: Quadrature::Trapezoid, ..Default::default() };
        let a = attribute(&model, &q, &cfg).unwrap();
        a.completeness.unwrap().iter().map(|c| c.delta.abs()).sum::<f32>()
    };
    let (coarse_gap, fine_gap) = (gap(4), gap(64));
    eprintln!(
        "completeness: Σ_layers |Σ scores − (f(a) − f(0))| = {coarse_gap:.3e} at 4 steps, {fine_gap:.3e} at 64 steps"
    );
    assert!(fine_gap < coarse_gap / 4.0, "{coarse_gap} -> {fine_gap}");
}

#[test]
fn refined_neurons_are_those_of_the_python_library() {
    let model = tiny("tiny-bert");
    let tok = TextTokenizer::from_dir(&fixture("tiny-bert")).unwrap();
    let gold = golden("eai-tiny-bert.json");
    let cfg = AttributionConfig::default();
    let per_prompt: Vec<Vec<NeuronId>> = gold["prompts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            coarse(
                &attribute(&model, &queries(&model, &tok, p.as_str().unwrap(), "paris"), &cfg).unwrap(),
                Threshold::Adaptive(0.3),
            )
            .unwrap()
        })
        .collect();
    let ours: Vec<[usize; 2]> = refine(&per_prompt, Sharing::Fixed(0.5), &[], 0.0)
        .unwrap()
        .neurons
        .iter()
        .map(|n| [n.layer, n.index])
        .collect();
    let theirs: Vec<[usize; 2]> = serde_json::from_value(gold["refined_p0.5_adaptive_0.3"].clone()).unwrap();
    assert!(!theirs.is_empty());
    assert_eq!(ours, theirs);
    let coarse_theirs: Vec<[usize; 2]> = serde_json::from_value(gold["coarse_adaptive_0.3"].clone()).unwrap();
    let coarse_ours: Vec<[usize; 2]> = per_prompt[1].iter().map(|n| [n.layer, n.index]).collect();
    assert_eq!(coarse_ours, coarse_theirs);
}

#[test]
fn multi_token_targets_work_for_causal_and_masked_models() {
    let gpt = tiny("tiny-gpt2");
    let dims = gpt.dims();
    let q = Query::for_target(gpt.objective(), &dims, &[5, 6, 7], &[], &[8, 9, 10]).unwrap();
    let a = attribute(&gpt, &q, &AttributionConfig { steps: 4, batch_size: 4, ..Default::default() }).unwrap();
    assert_eq!((a.n_layers(), a.d_ff(), a.token_probs.len()), (3, 128, 3));
    assert!((a.base_prob - a.token_probs.iter().product::<f32>()).abs() < 1e-9);
    let m = measure(&gpt, &q, &mut NoHook).unwrap();
    assert_eq!(m.argmax_ids.len(), 3);
    assert!((m.gt_prob - a.base_prob).abs() < 1e-6);
    // GPT edit works too (the Python library's edit is BERT-only).
    let mut gpt = gpt;
    let undo = edit(&mut gpt, &[NeuronId::new(2, 1)], 8, 9, EditRule::eai()).unwrap();
    undo.keep();

    let bert = tiny("tiny-bert");
    let tok = TextTokenizer::from_dir(&fixture("tiny-bert")).unwrap();
    let pieces = tok.target_ids("towers").unwrap();
    assert_eq!(pieces.len(), 2, "'towers' is two pieces in the fixture vocabulary");
    let q = queries(&bert, &tok, "paris is known for its [MASK] [MASK]", "towers");
    assert_eq!(q[0].positions.len(), 2);
    let a = attribute(&bert, &q, &AttributionConfig { steps: 4, batch_size: 4, ..Default::default() }).unwrap();
    assert!(a.completeness.unwrap().iter().all(|c| c.f_full > 0.0));
}

#[test]
fn attention_on_changed_rows_equals_the_whole_sequence_on_every_architecture() {
    // What IG's tails rely on entering block l + 1: a batch whose residual stream differs from
    // one base stream at some rows only gives, with only those rows projected to queries, keys
    // and values, the attention half of the whole sequence, at every row or at those rows.
    // Post-norm (bert), pre-norm causal (gpt2), rotary grouped-query (llama), sliding (mistral).
    for name in ["tiny-bert", "tiny-gpt2", "tiny-llama", "tiny-mistral"] {
        let model = tiny(name);
        let input = ModelInput::<AB>::from_ids(&[3, 5, 7, 9, 11, 4], &Default::default());
        let base = model.embed(&input);
        let [_, _, d] = base.dims();
        let (rows, batch) = ([1usize, 4], 3);
        let new: Vec<f32> = (0..batch * rows.len() * d).map(|i| ((i * 7919) % 97) as f32 / 48.5 - 1.0).collect();
        let new = burn::tensor::Tensor::<AB, 3>::from_data(
            burn::tensor::TensorData::new(new, [batch, rows.len(), d]),
            &Default::default(),
        );
        let mut x = base.clone().repeat_dim(0, batch);
        for (i, &p) in rows.iter().enumerate() {
            x = x.slice_assign([0..batch, p..p + 1, 0..d], new.clone().slice([0..batch, i..i + 1, 0..d]));
        }
        for layer in [0, model.dims().n_layers - 1] {
            let full = model.attention_half(layer, x.clone(), &input);
            let full_rows = values(kn_core::gather_rows(full.clone(), &rows).inner());
            let full = values(full.inner());
            let scale = full.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            for only_rows in [false, true] {
                let changed = model
                    .attention_half_changed(layer, x.clone(), base.clone(), &rows, only_rows, &input)
                    .expect("kn-models projects changed rows");
                let want = if only_rows { &full_rows } else { &full };
                let err = max_abs_diff(&values(changed.inner()), want) / scale;
                within(
                    &format!("{name} layer {layer}, rows only {only_rows}: changed rows vs whole"),
                    err,
                    TOL.optimised_rel,
                );
            }
        }
    }
}

#[test]
fn suppressing_a_gated_ffn_neuron_zeroes_the_down_projection_input() {
    // The neuron of a gated FFN is act(gate) * up, the input of down_proj: suppressing every
    // neuron of a layer must make its FFN output exactly zero (the residual passes through),
    // whatever the gate and up projections compute.
    let model = tiny("tiny-llama");
    let d_ff = model.dims().d_ff;
    let input = ModelInput::<AB>::from_ids(&[3, 5, 7, 9], &Default::default());
    let resid = model.embed(&input);
    let mid = model.attention_half(0, resid, &input);
    let act = model.ffn_activation(0, mid.clone());
    assert_eq!(act.dims()[2], d_ff);
    let out = model.ffn_output(0, mid.clone(), act.zeros_like());
    assert_eq!(values(out.inner()), values(mid.inner()), "zeroed neurons must leave only the residual");
}

#[test]
fn signed_edits_move_the_residual_towards_the_new_token_whatever_the_activation_sign() {
    // A gated FFN's neurons fire with either sign; the contribution of neuron i to the residual
    // is a_i · v_i, so the edit of v_i must carry the sign of a_i.
    let mut model = tiny("tiny-llama");
    let q = Query { ids: vec![3, 5, 7, 9, 11], positions: vec![4], target_ids: vec![2] };
    let neurons: Vec<NeuronId> = (0..16).map(|i| NeuronId::new(1, i)).collect();
    let signs = kn_core::activation_signs(&model, &q, &neurons).unwrap();
    assert!(signs.contains(&-1.0) && signs.contains(&1.0), "the fixture should have both signs: {signs:?}");
    let mut cap = Capture::default();
    forward_hooked(&model, &ModelInput::<AB>::from_ids(&q.ids, &Default::default()), &mut cap);
    let acts = values(cap.acts[1].clone().inner());
    let d_ff = model.dims().d_ff;
    let a: Vec<f32> = neurons.iter().map(|n| acts[4 * d_ff + n.index]).collect();
    let before = values(model.ffn_out_weight(1).inner());
    let e_new = values(model.token_embedding(6).inner());
    let undo = kn_core::edit_for(&mut model, &q, &neurons, 5, 6, EditRule::eai()).unwrap();
    let after = values(model.ffn_out_weight(1).inner());
    let d = model.dims().d_model;
    for (k, n) in neurons.iter().enumerate() {
        let i = n.index;
        let towards: f32 = (0..d).map(|j| a[k] * (after[i * d + j] - before[i * d + j]) * e_new[j]).sum();
        assert!(towards > 0.0 || a[k] == 0.0, "neuron {i} (activation {}) moved away from the new token", a[k]);
    }
    undo.undo(&mut model);
    assert_eq!(values(model.ffn_out_weight(1).inner()), before);
}

#[test]
fn a_neuron_listed_twice_is_edited_once() {
    let (mut once, mut twice) = (tiny("tiny-gpt2"), tiny("tiny-gpt2"));
    let n = NeuronId::new(1, 4);
    edit(&mut once, &[n], 5, 6, EditRule::eai()).unwrap().keep();
    edit(&mut twice, &[n, n], 5, 6, EditRule::eai()).unwrap().keep();
    assert_eq!(values(once.ffn_out_weight(1).inner()), values(twice.ffn_out_weight(1).inner()));
}

#[test]
fn batched_measurements_equal_one_query_at_a_time_on_every_architecture() {
    // Prompts of different lengths (padded in the batch), each read and patched at its own
    // position: the masked model at a middle position, the causal ones at the last.
    let prompts: [&[u32]; 4] = [&[3, 5, 7, 9, 11], &[4, 6], &[8, 10, 12, 14, 16, 18, 20], &[13, 15, 17]];
    let neurons = [NeuronId::new(0, 1), NeuronId::new(1, 3), NeuronId::new(1, 5)];
    for name in ["tiny-bert", "tiny-gpt2", "tiny-gpt-neo", "tiny-llama", "tiny-mistral", "tiny-qwen2"] {
        let model = tiny(name);
        let masked = model.objective() == kn_core::Objective::MaskedLm;
        let queries: Vec<Query> = prompts
            .iter()
            .enumerate()
            .map(|(k, ids)| {
                let pos = if masked { ids.len() / 2 } else { ids.len() - 1 };
                Query { ids: ids.to_vec(), positions: vec![pos], target_ids: vec![2 + k as u32] }
            })
            .collect();
        let refs: Vec<&Query> = queries.iter().collect();
        let mut worst = 0.0f32;
        for patch in [None, Some((&neurons[..], 0.0f32)), Some((&neurons[..], 2.0f32))] {
            let batched = kn_core::measure_batch(&model, &refs, patch).unwrap();
            for (q, b) in queries.iter().zip(&batched) {
                let one = match patch {
                    None => measure(&model, std::slice::from_ref(q), &mut NoHook).unwrap(),
                    Some((n, f)) => {
                        let scope = kn_core::intervene::target_scope(model.objective(), std::slice::from_ref(q));
                        let mut p = kn_core::ScaleNeurons::new(n, &model.dims(), f, scope).unwrap();
                        measure(&model, std::slice::from_ref(q), &mut p).unwrap()
                    }
                };
                assert_eq!(one.argmax_ids, b.argmax_ids, "{name}: argmax of {q:?} with {patch:?}");
                worst = worst.max((one.gt_prob - b.gt_prob).abs() / one.gt_prob);
            }
        }
        within(&format!("{name}: batched vs one-at-a-time target probability, relative"), worst, 1e-5);
    }
}
