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
            ],
            "known_hub_names": known,
            "backend": kn_models::backend::NAME,
            "weights": ["model.safetensors", "pytorch_model.bin", "sharded *.index.json"],
        })
    );
    Ok(())
}

/// `kn-cli init-random`.
pub fn init_random(a: InitRandomArgs) -> Result<()> {
    let cfg = preset_config(&a.preset)
        .ok_or_else(|| anyhow!("unknown preset '{}' (known: {})", a.preset, PRESETS.join(", ")))?;
    write_random_checkpoint(&cfg, a.seed, &a.out)?;
    let mut copied = Vec::new();
    if let Some(dir) = &a.tokenizer {
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
            let src = dir.join(f);
            if src.is_file() {
                std::fs::copy(&src, a.out.join(f)).with_context(|| format!("copying {}", src.display()))?;
                copied.push(f);
            }
        }
        if copied.is_empty() {
            return Err(anyhow!("no tokenizer files in {}", dir.display()));
        }
    }
    println!("{}", json!({"out": a.out, "preset": a.preset, "seed": a.seed, "tokenizer_files": copied}));
    Ok(())
}
