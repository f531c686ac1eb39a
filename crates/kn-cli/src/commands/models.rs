//! `kn-cli models`: what this build supports.

use anyhow::{anyhow, Context, Result};
use kn_models::random::{preset_config, write_random_checkpoint, PRESETS};

use crate::cli::InitRandomArgs;
use serde_json::json;

/// Hub names known to work (architectures of the Python library and more).
const KNOWN: &[(&str, &str)] = &[
    ("bert-base-uncased", "bert"),
    ("bert-base-cased", "bert"),
    ("bert-large-uncased", "bert"),
    ("bert-base-multilingual-uncased", "bert"),
    ("gpt2", "gpt2"),
    ("gpt2-medium", "gpt2"),
    ("gpt2-large", "gpt2"),
    ("gpt2-xl", "gpt2"),
    ("EleutherAI/gpt-neo-125M", "gpt_neo"),
    ("EleutherAI/gpt-neo-1.3B", "gpt_neo"),
    ("EleutherAI/gpt-neo-2.7B", "gpt_neo"),
    ("HuggingFaceTB/SmolLM2-135M", "llama"),
    ("HuggingFaceTB/SmolLM2-360M", "llama"),
    ("TinyLlama/TinyLlama-1.1B-Chat-v1.0", "llama"),
    ("meta-llama/Llama-2-7b-hf", "llama"),
    ("meta-llama/Llama-3.2-1B", "llama"),
    ("meta-llama/Llama-3.1-8B", "llama"),
    ("mistralai/Mistral-7B-v0.1", "mistral"),
    ("Qwen/Qwen2-0.5B", "qwen2"),
    ("Qwen/Qwen2.5-0.5B", "qwen2"),
];

/// Runs the command.
pub fn run() -> Result<()> {
    let known: Vec<_> = KNOWN.iter().map(|(n, a)| json!({"name": n, "architecture": a})).collect();
    println!(
        "{}",
        json!({
            "architectures": [
                {"model_type": "bert", "heads": ["BertForMaskedLM", "BertForPreTraining", "BertLMHeadModel"], "objective": "masked_lm"},
                {"model_type": "gpt2", "heads": ["GPT2LMHeadModel", "GPT2Model (tied head)"], "objective": "causal_lm"},
                {"model_type": "gpt_neo", "heads": ["GPTNeoForCausalLM"], "objective": "causal_lm"},
                {"model_type": "llama", "heads": ["LlamaForCausalLM"], "objective": "causal_lm",
                 "notes": "Llama 2/3/3.1/3.2 (rope_scaling llama3, linear), TinyLlama, SmolLM, SmolLM2; GQA"},
                {"model_type": "mistral", "heads": ["MistralForCausalLM"], "objective": "causal_lm",
                 "notes": "sliding-window attention"},
                {"model_type": "qwen2", "heads": ["Qwen2ForCausalLM"], "objective": "causal_lm",
                 "notes": "q/k/v bias, tied or untied head, sliding layers"},
            ],
            "neuron_site": {
                "bert": "output of intermediate (dense + GELU); value vector: row i of output.dense (transposed)",
                "gpt2": "output of the activation after mlp.c_fc; value vector: row i of mlp.c_proj",
                "gpt_neo": "output of the activation after mlp.c_fc; value vector: row i of mlp.c_proj (transposed)",
                "llama, mistral, qwen2": "input of mlp.down_proj, silu(gate_proj(x)) * up_proj(x); value vector: row i of down_proj (transposed)",
            },
            "known_hub_names": known,
            "backend": kn_models::backend::NAME,
            "weights": ["model.safetensors (f32, f16, bf16)", "pytorch_model.bin", "sharded *.index.json",
                        "*.gguf (llama, qwen2: F32 F16 BF16 Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q8_1 Q2_K..Q8_K)"],
        })
    );
    Ok(())
}

/// `kn-cli init-random`: the folder is written beside its destination and renamed into place
/// when complete, so a failure leaves nothing half-written.
pub fn init_random(a: InitRandomArgs) -> Result<()> {
    let cfg = preset_config(&a.preset)
        .ok_or_else(|| anyhow!("unknown preset '{}' (known: {})", a.preset, PRESETS.join(", ")))?;
    let name = a.out.file_name().ok_or_else(|| anyhow!("--out {} names no folder", a.out.display()))?;
    let staging = super::parent_of(&a.out).join(format!(".{}.partial-{}", name.to_string_lossy(), std::process::id()));
    let result = write_into(&a, &cfg, &staging);
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    let copied = result?;
    if a.out.is_dir() {
        // An empty folder (checked before): replaced by the complete one.
        std::fs::remove_dir(&a.out).with_context(|| format!("replacing the empty folder {}", a.out.display()))?;
    }
    std::fs::rename(&staging, &a.out).with_context(|| format!("moving the checkpoint into {}", a.out.display()))?;
    println!("{}", json!({"out": a.out, "preset": a.preset, "seed": a.seed, "tokenizer_files": copied}));
    Ok(())
}

/// Writes the checkpoint and copies the tokenizer files into `dir`.
fn write_into(a: &InitRandomArgs, cfg: &serde_json::Value, dir: &std::path::Path) -> Result<Vec<&'static str>> {
    write_random_checkpoint(cfg, a.seed, dir)?;
    let mut copied = Vec::new();
    if let Some(src_dir) = &a.tokenizer {
        for f in [
            "tokenizer.json",
            "tokenizer_config.json",
            "vocab.txt",
            "vocab.json",
            "encoder.json",
            "vocab.bpe",
            "merges.txt",
            "special_tokens_map.json",
        ] {
            let src = src_dir.join(f);
            if src.is_file() {
                std::fs::copy(&src, dir.join(f)).with_context(|| format!("copying {}", src.display()))?;
                copied.push(f);
            }
        }
        if copied.is_empty() {
            return Err(anyhow!("no tokenizer files in {}", src_dir.display()));
        }
    }
    Ok(copied)
}
