//! Logits of the tiny random-weight checkpoints written by `scripts/gen_fixtures.py` match
//! what Hugging Face transformers computed on the same inputs (tolerance: `TOL.logits_abs`).

use crate::common::*;
use kn_core::{KnowledgeModel, ModelInput};
use kn_models::load_dir;

fn check(name: &str, input: ModelInput<B>, gold: &serde_json::Value, model: &impl KnowledgeModel<B>) {
    let logits = model.forward(&input);
    let shape: Vec<usize> =
        gold["logits_shape"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
    assert_eq!(logits.dims().to_vec(), shape, "{name}: logits shape");
    let diff = max_abs_diff(&values(logits), &floats(&gold["logits"]));
    within(&format!("{name}: max |logits - transformers|"), diff, TOL.logits_abs);
}

#[test]
fn tiny_bert_with_token_types_and_padding_matches_transformers() {
    let gold = golden("tiny-bert.json");
    let dev = Default::default();
    let (model, cfg) = load_dir::<B>(&fixture("tiny-bert"), &[], &dev).expect("load tiny-bert");
    assert_eq!(cfg.n_layers, 3);
    let ids = id_rows(&gold["input_ids"]);
    let mask = id_rows(&gold["attention_mask"]);
    assert!(mask.iter().flatten().any(|&m| m == 0), "the fixture must contain padding");
    let lens: Vec<usize> = mask.iter().map(|r| r.iter().filter(|&&m| m == 1).count()).collect();
    let seqs: Vec<Vec<u32>> = ids.iter().zip(&lens).map(|(r, &n)| r[..n].to_vec()).collect();
    let input = ModelInput::<B>::from_batch(&seqs, 0, &dev).with_token_types(&id_rows(&gold["token_type_ids"]), &dev);
    check("tiny-bert", input, &gold, &model);
}

#[test]
fn tiny_gpt2_from_pytorch_bin_matches_transformers() {
    let gold = golden("tiny-gpt2.json");
    let dev = Default::default();
    let (model, _) = load_dir::<B>(&fixture("tiny-gpt2"), &[], &dev).expect("load tiny-gpt2");
    let input = ModelInput::<B>::from_batch(&id_rows(&gold["input_ids"]), 0, &dev);
    check("tiny-gpt2", input, &gold, &model);
}

#[test]
fn tiny_gpt_neo_sharded_with_local_attention_matches_transformers() {
    let gold = golden("tiny-gpt-neo.json");
    let dev = Default::default();
    let dir = fixture("tiny-gpt-neo");
    assert!(dir.join("model.safetensors.index.json").is_file(), "the fixture must be sharded");
    let (model, cfg) = load_dir::<B>(&dir, &[], &dev).expect("load tiny-gpt-neo");
    let ids = id_rows(&gold["input_ids"]);
    let window = gold["window_size"].as_u64().unwrap() as usize;
    assert!(ids[0].len() > window, "the input must be longer than the local window");
    assert!(cfg.attention.iter().any(|k| matches!(k, kn_models::nn::AttentionKind::CausalLocal { .. })));
    assert!(cfg.attention.iter().any(|k| matches!(k, kn_models::nn::AttentionKind::Causal)));
    let input = ModelInput::<B>::from_batch(&ids, 0, &dev);
    check("tiny-gpt-neo", input, &gold, &model);
}

#[test]
fn a_neo_model_run_with_global_attention_everywhere_differs() {
    // Guard that the local window is really exercised: treating every layer as global must
    // change the logits beyond the tolerance.
    let gold = golden("tiny-gpt-neo.json");
    let dev = Default::default();
    let (mut model, _) = load_dir::<B>(&fixture("tiny-gpt-neo"), &[], &dev).unwrap();
    for b in &mut model.blocks {
        b.attn.kind = kn_models::nn::AttentionKind::Causal;
    }
    let input = ModelInput::<B>::from_batch(&id_rows(&gold["input_ids"]), 0, &dev);
    let diff = max_abs_diff(&values(model.forward(&input)), &floats(&gold["logits"]));
    assert!(diff > 100.0 * TOL.logits_abs, "local attention made no difference ({diff})");
}

/// Loads a Llama-family fixture and checks its logits on both rows of its input.
fn llama_family(name: &str) -> (kn_models::Transformer<B>, kn_models::ArchConfig, serde_json::Value) {
    let gold = golden(&format!("{name}.json"));
    let (model, cfg) =
        load_dir::<B>(&fixture(name), &[], &Default::default()).unwrap_or_else(|e| panic!("{name}: {e}"));
    let input = ModelInput::<B>::from_batch(&id_rows(&gold["input_ids"]), 0, &Default::default());
    check(name, input, &gold, &model);
    (model, cfg, gold)
}

#[test]
fn tiny_llama_bf16_with_gqa_head_dim_and_llama3_rope_matches_transformers() {
    let (mut model, cfg, gold) = llama_family("tiny-llama");
    assert_eq!((cfg.n_heads, cfg.n_kv_heads, cfg.head_dim, cfg.d_model), (4, 2, 16, 32));
    assert!(cfg.tie_word_embeddings);
    // Guard: without the llama3 rescaling the logits move well beyond the tolerance.
    let plain = kn_models::nn::Rotary::new(10_000.0, 16, None);
    for b in &mut model.blocks {
        b.attn.rope = Some(plain.clone());
    }
    let input = ModelInput::<B>::from_batch(&id_rows(&gold["input_ids"]), 0, &Default::default());
    let diff = max_abs_diff(&values(model.forward(&input)), &floats(&gold["logits"]));
    assert!(diff > 100.0 * TOL.logits_abs, "rope scaling made no difference ({diff})");
}

#[test]
fn tiny_mistral_f16_with_a_sliding_window_shorter_than_the_input_matches_transformers() {
    let (mut model, cfg, gold) = llama_family("tiny-mistral");
    let window = gold["sliding_window"].as_u64().unwrap() as usize;
    assert!(id_rows(&gold["input_ids"])[0].len() > window, "the input must be longer than the window");
    assert_eq!(cfg.attention[0], kn_models::nn::AttentionKind::CausalLocal { window });
    assert_eq!(cfg.n_kv_heads, 1);
    for b in &mut model.blocks {
        b.attn.kind = kn_models::nn::AttentionKind::Causal;
    }
    let input = ModelInput::<B>::from_batch(&id_rows(&gold["input_ids"]), 0, &Default::default());
    let diff = max_abs_diff(&values(model.forward(&input)), &floats(&gold["logits"]));
    assert!(diff > 100.0 * TOL.logits_abs, "the sliding window made no difference ({diff})");
}

#[test]
fn tiny_qwen2_sharded_with_qkv_bias_and_an_untied_head_matches_transformers() {
    let dir = fixture("tiny-qwen2");
    assert!(dir.join("model.safetensors.index.json").is_file(), "the fixture must be sharded");
    let (model, cfg, _) = llama_family("tiny-qwen2");
    assert!(cfg.qkv_bias && !cfg.o_bias && !cfg.tie_word_embeddings);
    assert!(model.blocks[0].attn.q.bias.is_some() && model.blocks[0].attn.o.bias.is_none());
}
