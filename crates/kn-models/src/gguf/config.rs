//! GGUF metadata (`{arch}.*` keys, as llama.cpp's converter writes them) → the config.json
//! fields transformers' GGUF loader derives from them.

use std::io::BufReader;

use candle_core::quantized::gguf_file::Value;
use serde_json::json;

use super::GgufFile;
use crate::config::{Arch, HfConfig, LlamaConfig};
use crate::error::LoadError;

/// Llama 3.1's RoPE divisors, which llama.cpp stores as a tensor.
pub(super) const ROPE_FREQS: &str = "rope_freqs.weight";

/// An unsigned integer of any GGUF width.
pub(super) fn uint(v: &Value) -> Option<u64> {
    match *v {
        Value::U8(x) => Some(x.into()),
        Value::U16(x) => Some(x.into()),
        Value::U32(x) => Some(x.into()),
        Value::U64(x) => Some(x),
        Value::I8(x) => u64::try_from(x).ok(),
        Value::I16(x) => u64::try_from(x).ok(),
        Value::I32(x) => u64::try_from(x).ok(),
        Value::I64(x) => u64::try_from(x).ok(),
        _ => None,
    }
}

fn float(v: &Value) -> Option<f64> {
    match *v {
        Value::F32(x) => Some(x.into()),
        Value::F64(x) => Some(x),
        _ => uint(v).map(|x| x as f64),
    }
}

/// The config of a Llama-family GGUF file.
pub(super) fn hf_config(f: &GgufFile) -> Result<HfConfig, LoadError> {
    let arch_name = f.architecture()?.to_string();
    let arch = match arch_name.as_str() {
        "llama" => Arch::Llama,
        "qwen2" => Arch::Qwen2,
        other => {
            return Err(LoadError::UnsupportedArch { model_type: format!("{other} (GGUF)"), path: f.path().into() })
        }
    };
    let key = |k: &str| format!("{arch_name}.{k}");
    let need_uint = |k: &str| {
        f.get(&key(k)).and_then(uint).ok_or_else(|| f.error(format!("metadata '{}' (an integer) is missing", key(k))))
    };
    let heads = need_uint("attention.head_count")?;
    let d_model = need_uint("embedding_length")?;
    let n_kv = f.get(&key("attention.head_count_kv")).and_then(uint).unwrap_or(heads);
    let head_dim =
        f.get(&key("attention.key_length")).and_then(uint).unwrap_or(d_model.checked_div(heads).unwrap_or(0));
    if let Some(rot) = f.get(&key("rope.dimension_count")).and_then(uint) {
        if rot != head_dim {
            return Err(f.error(format!(
                "rotary dimension {rot} differs from head_dim {head_dim} (partial RoPE is not supported)"
            )));
        }
    }
    let vocab = match f.get(&key("vocab_size")).and_then(uint) {
        Some(v) => v,
        None => match f.get("tokenizer.ggml.tokens") {
            Some(Value::Array(t)) => t.len() as u64,
            _ => {
                return Err(f.error(format!(
                    "neither '{}' nor tokenizer.ggml.tokens gives the vocabulary size",
                    key("vocab_size")
                )))
            }
        },
    };
    let eps = f
        .get(&key("attention.layer_norm_rms_epsilon"))
        .and_then(float)
        .ok_or_else(|| f.error(format!("metadata '{}' is missing", key("attention.layer_norm_rms_epsilon"))))?;
    let rope_scaling = match f.get(&key("rope.scaling.type")) {
        None => None,
        Some(Value::String(t)) if t == "none" => None,
        Some(Value::String(t)) if t == "linear" => {
            let factor = f
                .get(&key("rope.scaling.factor"))
                .and_then(float)
                .ok_or_else(|| f.error("linear RoPE scaling without a factor"))?;
            Some(json!({"rope_type": "linear", "factor": factor}))
        }
        Some(other) => return Err(f.error(format!("RoPE scaling {other:?} is not supported (none, linear)"))),
    };
    let value = json!({
        "vocab_size": vocab,
        "hidden_size": d_model,
        "intermediate_size": need_uint("feed_forward_length")?,
        "num_hidden_layers": need_uint("block_count")?,
        "num_attention_heads": heads,
        "num_key_value_heads": n_kv,
        "head_dim": head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": need_uint("context_length")?,
        "rms_norm_eps": eps,
        "rope_theta": f.get(&key("rope.freq_base")).and_then(float).unwrap_or(10_000.0),
        "rope_scaling": rope_scaling,
        "tie_word_embeddings": !f.has_tensor("output.weight"),
    });
    let mut cfg: LlamaConfig = serde_json::from_value(value).map_err(|e| f.error(format!("metadata: {e}")))?;
    if f.has_tensor(ROPE_FREQS) {
        let mut file = BufReader::new(
            std::fs::File::open(f.path()).map_err(|source| LoadError::Io { path: f.path().into(), source })?,
        );
        cfg.rope_freq_factors = Some(f.read_tensor(&mut file, ROPE_FREQS)?.data);
    }
    Ok(HfConfig::Llama(arch, cfg))
}
