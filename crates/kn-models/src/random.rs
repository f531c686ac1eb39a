//! Randomly initialised checkpoints of real shapes (bert-base-uncased, gpt2, gpt-neo-125M, …),
//! for benchmarks and demos where the Hub cannot be reached: same config.json and tensor names
//! as the real ones, random values.

use crate::nn::DualMatmul;
use std::path::Path;

use safetensors::tensor::{Dtype, TensorView};
use serde_json::{json, Value};

use crate::config::{ArchConfig, HfConfig};
use crate::error::LoadError;
use crate::load::build;
use crate::transformer::Transformer;
use crate::weights::{RawTensor, WeightMap};

/// Known shapes.
pub const PRESETS: &[&str] = &[
    "bert-base-uncased",
    "bert-large-uncased",
    "gpt2",
    "gpt2-medium",
    "EleutherAI/gpt-neo-125M",
    "HuggingFaceTB/SmolLM2-135M",
    "meta-llama/Llama-3.2-1B",
    "tiny-bert",
    "tiny-gpt2",
    "tiny-llama",
];

/// The config.json of a preset.
pub fn preset_config(name: &str) -> Option<Value> {
    let bert = |d: usize, l: usize, h: usize| {
        json!({"architectures": ["BertForMaskedLM"], "model_type": "bert", "vocab_size": 30522, "hidden_size": d,
               "num_hidden_layers": l, "num_attention_heads": h, "intermediate_size": 4 * d, "hidden_act": "gelu",
               "max_position_embeddings": 512, "type_vocab_size": 2, "layer_norm_eps": 1e-12, "pad_token_id": 0})
    };
    let gpt2 = |d: usize, l: usize, h: usize| {
        json!({"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": 50257, "n_embd": d, "n_layer": l,
               "n_head": h, "n_positions": 1024, "n_inner": null, "activation_function": "gelu_new",
               "layer_norm_epsilon": 1e-5, "bos_token_id": 50256, "eos_token_id": 50256})
    };
    #[allow(clippy::too_many_arguments)]
    fn llama(
        d: usize,
        ff: usize,
        l: usize,
        h: usize,
        kv: usize,
        vocab: usize,
        ctx: usize,
        theta: f64,
        tie: bool,
    ) -> Value {
        json!({"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": vocab, "hidden_size": d,
               "intermediate_size": ff, "num_hidden_layers": l, "num_attention_heads": h, "num_key_value_heads": kv,
               "hidden_act": "silu", "max_position_embeddings": ctx, "rms_norm_eps": 1e-5, "rope_theta": theta,
               "tie_word_embeddings": tie, "bos_token_id": 1, "eos_token_id": 2})
    }
    Some(match name {
        "bert-base-uncased" => bert(768, 12, 12),
        "bert-large-uncased" => bert(1024, 24, 16),
        "tiny-bert" => bert(64, 2, 4),
        "gpt2" => gpt2(768, 12, 12),
        "gpt2-medium" => gpt2(1024, 24, 16),
        "tiny-gpt2" => gpt2(64, 2, 4),
        "HuggingFaceTB/SmolLM2-135M" | "SmolLM2-135M" => llama(576, 1536, 30, 9, 3, 49152, 8192, 1e5, true),
        "meta-llama/Llama-3.2-1B" | "Llama-3.2-1B" => {
            let mut c = llama(2048, 8192, 16, 32, 8, 128_256, 131_072, 5e5, true);
            c["rope_scaling"] = json!({"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                                       "high_freq_factor": 4.0, "original_max_position_embeddings": 8192});
            c
        }
        "tiny-llama" => llama(64, 128, 2, 4, 2, 512, 256, 1e4, false),
        "EleutherAI/gpt-neo-125M" | "gpt-neo-125M" => json!({
            "architectures": ["GPTNeoForCausalLM"], "model_type": "gpt_neo", "vocab_size": 50257, "hidden_size": 768,
            "num_layers": 12, "num_heads": 12, "max_position_embeddings": 2048, "window_size": 256,
            "attention_types": [[["global", "local"], 6]], "intermediate_size": null,
            "activation_function": "gelu_new", "layer_norm_epsilon": 1e-5, "bos_token_id": 50256, "eos_token_id": 50256}),
        _ => return None,
    })
}

/// The normalised config of a `config.json` value (a preset's, say).
pub fn arch_config(config: &Value) -> Result<ArchConfig, LoadError> {
    let path = Path::new("config.json");
    HfConfig::from_json(&config.to_string(), path)?.to_arch(path)
}

/// A model of `config` with random weights (N(0, 0.02), as Hugging Face initialises), and the
/// tensors it was built from under their Hugging Face names.
pub fn random_model<B: DualMatmul>(
    config: &Value,
    seed: u64,
    device: &B::Device,
) -> Result<(Transformer<B>, Vec<(String, RawTensor)>), LoadError> {
    let cfg = arch_config(config)?;
    let mut weights = WeightMap::synthetic(seed, 0.02);
    let model = build(&cfg, &mut weights, device)?;
    Ok((model, weights.handed_out()))
}

/// Writes `config.json` and `model.safetensors` of a random model into `dir`.
pub fn write_random_checkpoint(config: &Value, seed: u64, dir: &Path) -> Result<(), LoadError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| LoadError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let device = Default::default();
    let (_, tensors) = random_model::<crate::backend::Inner>(config, seed, &device)?;
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .into_iter()
        .map(|(name, t)| (name, t.shape, t.data.iter().flat_map(|v| v.to_le_bytes()).collect()))
        .collect();
    let file = dir.join("model.safetensors");
    let views = bytes
        .iter()
        .map(|(n, shape, b)| {
            TensorView::new(Dtype::F32, shape.clone(), b)
                .map(|v| (n.clone(), v))
                .map_err(|e| LoadError::CorruptWeights { path: file.clone(), reason: e.to_string() })
        })
        .collect::<Result<Vec<_>, _>>()?;
    safetensors::serialize_to_file(views, None, &file)
        .map_err(|e| LoadError::CorruptWeights { path: file.clone(), reason: e.to_string() })?;
    let config_path = dir.join("config.json");
    let text =
        serde_json::to_string_pretty(config).map_err(|source| LoadError::Json { path: config_path.clone(), source })?;
    std::fs::write(&config_path, text).map_err(io(&config_path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::load_dir;

    #[test]
    fn a_written_random_checkpoint_loads_back_with_every_tensor_used() {
        let tmp = tempfile::tempdir().unwrap();
        for preset in ["tiny-bert", "tiny-gpt2", "tiny-llama"] {
            let dir = tmp.path().join(preset);
            write_random_checkpoint(&preset_config(preset).unwrap(), 1, &dir).unwrap();
            let (m, cfg) = load_dir::<crate::backend::Inner>(&dir, &[], &Default::default()).unwrap();
            assert_eq!(m.blocks.len(), cfg.n_layers);
        }
    }
}
