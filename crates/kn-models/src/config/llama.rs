//! The Llama family's config.json (`LlamaConfig`, `MistralConfig`, `Qwen2Config`): one serde
//! mirror, since the three share their field names; what differs (sliding windows, biases) is
//! read per architecture in [`LlamaConfig::to_arch`].
//! <https://github.com/huggingface/transformers/blob/v4.57.6/src/transformers/models/llama/configuration_llama.py>,
//! <https://github.com/huggingface/transformers/blob/v4.57.6/src/transformers/models/mistral/configuration_mistral.py>,
//! <https://github.com/huggingface/transformers/blob/v4.57.6/src/transformers/models/qwen2/configuration_qwen2.py>.

use serde::Deserialize;

use super::{Arch, ArchConfig, Rope};
use crate::nn::{Activation, AttentionKind, NormKind, RopeScaling};

/// config.json of `LlamaForCausalLM`, `MistralForCausalLM` and `Qwen2ForCausalLM`.
#[derive(Debug, Clone, Deserialize)]
pub struct LlamaConfig {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Residual width.
    pub hidden_size: usize,
    /// FFN width.
    pub intermediate_size: usize,
    /// Layers.
    pub num_hidden_layers: usize,
    /// Query heads.
    pub num_attention_heads: usize,
    /// Key/value heads (grouped-query attention); `null` = `num_attention_heads`.
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    /// Width of one head; `null` = `hidden_size / num_attention_heads`.
    #[serde(default)]
    pub head_dim: Option<usize>,
    /// Activation of the FFN gate.
    #[serde(default = "silu")]
    pub hidden_act: String,
    /// Context length.
    pub max_position_embeddings: usize,
    /// RMSNorm epsilon.
    #[serde(default = "eps")]
    pub rms_norm_eps: f64,
    /// RoPE base.
    #[serde(default = "theta")]
    pub rope_theta: f64,
    /// RoPE rescaling (`{"rope_type": "llama3", ...}`), `null` for none.
    #[serde(default)]
    pub rope_scaling: Option<serde_json::Value>,
    /// Llama: bias on q, k, v and o.
    #[serde(default)]
    pub attention_bias: bool,
    /// Llama: bias on the FFN projections.
    #[serde(default)]
    pub mlp_bias: bool,
    /// Whether the LM head is the token embedding.
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// Mistral: window of every layer (an absent key means transformers' default, 4096);
    /// Qwen2: window of the sliding layers, when `use_sliding_window`.
    #[serde(default)]
    pub sliding_window: Option<usize>,
    /// Qwen2: whether any layer slides.
    #[serde(default)]
    pub use_sliding_window: bool,
    /// Qwen2: layers below this index attend globally.
    #[serde(default = "max_window_layers")]
    pub max_window_layers: usize,
    /// Qwen2: `full_attention` / `sliding_attention` per layer, when given.
    #[serde(default)]
    pub layer_types: Option<Vec<String>>,
    /// Per-pair RoPE divisors that came with the weights (GGUF `rope_freqs.weight`), not a
    /// config.json field.
    #[serde(skip)]
    pub rope_freq_factors: Option<Vec<f32>>,
}

fn silu() -> String {
    "silu".into()
}
fn eps() -> f64 {
    1e-6
}
fn theta() -> f64 {
    10_000.0
}
fn max_window_layers() -> usize {
    28
}

/// transformers' `MistralConfig` default window, for a config.json without the key.
pub(crate) const MISTRAL_DEFAULT_WINDOW: usize = 4096;

impl LlamaConfig {
    /// The normalised config of `arch` (one of the Llama family), or the reason it is invalid.
    pub fn to_arch(&self, arch: Arch) -> Result<ArchConfig, String> {
        let n = self.num_hidden_layers;
        let n_heads = self.num_attention_heads;
        let n_kv_heads = self.num_key_value_heads.unwrap_or(n_heads);
        if n_heads == 0 || n_kv_heads == 0 || !n_heads.is_multiple_of(n_kv_heads) {
            return Err(format!(
                "num_attention_heads ({n_heads}) must be a positive multiple of num_key_value_heads ({n_kv_heads})"
            ));
        }
        let head_dim = match self.head_dim {
            Some(h) => h,
            None if self.hidden_size.is_multiple_of(n_heads) => self.hidden_size / n_heads,
            None => return Err(format!("hidden size {} is not divisible by {n_heads} heads", self.hidden_size)),
        };
        if head_dim % 2 != 0 {
            return Err(format!("head_dim {head_dim} must be even for rotary positions"));
        }
        let attention = self.attention(arch)?;
        let activation = Activation::from_hf(&self.hidden_act)
            .ok_or_else(|| format!("unsupported activation '{}'", self.hidden_act))?;
        let scaling = match &self.rope_freq_factors {
            Some(f) if f.len() != head_dim / 2 => {
                return Err(format!("rope_freqs has {} factors, head_dim {head_dim} needs {}", f.len(), head_dim / 2))
            }
            Some(f) => Some(RopeScaling::Factors(f.clone())),
            None => rope_scaling(self.rope_scaling.as_ref())?,
        };
        let (qkv_bias, o_bias) = match arch {
            Arch::Qwen2 => (true, false),
            _ => (self.attention_bias, self.attention_bias),
        };
        Ok(ArchConfig {
            arch,
            d_model: self.hidden_size,
            d_ff: self.intermediate_size,
            n_heads,
            n_kv_heads,
            head_dim,
            n_layers: n,
            vocab_size: self.vocab_size,
            max_positions: self.max_position_embeddings,
            type_vocab_size: None,
            activation,
            gated_ffn: true,
            norm: NormKind::Rms,
            eps: self.rms_norm_eps,
            attention,
            attn_scale: vec![1.0 / (head_dim as f64).sqrt(); n],
            rope: Some(Rope { theta: self.rope_theta, scaling }),
            qkv_bias,
            o_bias,
            mlp_bias: arch == Arch::Llama && self.mlp_bias,
            tie_word_embeddings: self.tie_word_embeddings,
        })
    }

    /// Per-layer attention pattern: causal, or sliding where the architecture says so.
    fn attention(&self, arch: Arch) -> Result<Vec<AttentionKind>, String> {
        let n = self.num_hidden_layers;
        let local = |w: usize| {
            if w == 0 {
                Err("sliding_window must be positive".to_string())
            } else {
                Ok(AttentionKind::CausalLocal { window: w })
            }
        };
        match arch {
            Arch::Mistral => match self.sliding_window {
                Some(w) => Ok(vec![local(w)?; n]),
                None => Ok(vec![AttentionKind::Causal; n]),
            },
            Arch::Qwen2 => {
                let window = self.sliding_window.filter(|_| self.use_sliding_window);
                let types: Vec<String> = match &self.layer_types {
                    Some(t) => t.clone(),
                    None => (0..n)
                        .map(|i| {
                            let sliding = window.is_some() && i >= self.max_window_layers;
                            if sliding { "sliding_attention" } else { "full_attention" }.to_string()
                        })
                        .collect(),
                };
                if types.len() != n {
                    return Err(format!("layer_types lists {} layers, num_hidden_layers is {n}", types.len()));
                }
                types
                    .iter()
                    .map(|t| match (t.as_str(), window) {
                        ("full_attention", _) => Ok(AttentionKind::Causal),
                        ("sliding_attention", Some(w)) => local(w),
                        ("sliding_attention", None) => {
                            Err("layer_types has sliding_attention but no sliding_window is set".into())
                        }
                        (other, _) => Err(format!("unknown layer type '{other}'")),
                    })
                    .collect()
            }
            _ => Ok(vec![AttentionKind::Causal; n]),
        }
    }
}

/// `rope_scaling` as transformers reads it (`rope_type`, or the older `type`).
fn rope_scaling(value: Option<&serde_json::Value>) -> Result<Option<RopeScaling>, String> {
    let Some(v) = value.filter(|v| !v.is_null()) else { return Ok(None) };
    let kind = v.get("rope_type").or_else(|| v.get("type")).and_then(|t| t.as_str()).unwrap_or("default");
    let num = |key: &str| {
        v.get(key).and_then(serde_json::Value::as_f64).ok_or_else(|| format!("rope_scaling '{kind}' needs '{key}'"))
    };
    match kind {
        "default" => Ok(None),
        "linear" => Ok(Some(RopeScaling::Linear { factor: num("factor")? })),
        "llama3" => Ok(Some(RopeScaling::Llama3 {
            factor: num("factor")?,
            low_freq_factor: num("low_freq_factor")?,
            high_freq_factor: num("high_freq_factor")?,
            original_max_position_embeddings: num("original_max_position_embeddings")?,
        })),
        other => Err(format!("rope_scaling type '{other}' is not supported (supported: default, linear, llama3)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HfConfig;
    use std::path::Path;

    fn arch(text: &str) -> Result<ArchConfig, crate::LoadError> {
        HfConfig::from_json(text, Path::new("config.json"))?.to_arch(Path::new("config.json"))
    }

    const BASE: &str = r#""vocab_size":10,"hidden_size":8,"intermediate_size":16,"num_hidden_layers":3,
        "num_attention_heads":4,"num_key_value_heads":2,"max_position_embeddings":32"#;

    #[test]
    fn mistral_without_a_window_key_slides_at_transformers_default() {
        let c = arch(&format!(r#"{{"model_type":"mistral",{BASE}}}"#)).unwrap();
        assert_eq!(c.attention, vec![AttentionKind::CausalLocal { window: MISTRAL_DEFAULT_WINDOW }; 3]);
        let c = arch(&format!(r#"{{"model_type":"mistral","sliding_window":null,{BASE}}}"#)).unwrap();
        assert_eq!(c.attention, vec![AttentionKind::Causal; 3]);
    }

    #[test]
    fn qwen2_slides_only_from_max_window_layers_and_has_qkv_bias() {
        let c = arch(&format!(
            r#"{{"model_type":"qwen2","use_sliding_window":true,"sliding_window":5,"max_window_layers":2,{BASE}}}"#
        ))
        .unwrap();
        assert_eq!(c.attention[1], AttentionKind::Causal);
        assert_eq!(c.attention[2], AttentionKind::CausalLocal { window: 5 });
        assert!(c.qkv_bias && !c.o_bias);
        assert_eq!((c.n_kv_heads, c.head_dim), (2, 2));
    }

    #[test]
    fn unsupported_rope_scaling_is_refused_by_name() {
        let err = arch(&format!(r#"{{"model_type":"llama","rope_scaling":{{"rope_type":"yarn","factor":4}},{BASE}}}"#))
            .unwrap_err()
            .to_string();
        assert!(err.contains("yarn") && err.contains("config.json"), "{err}");
        let err = arch(&format!(
            r#"{{"model_type":"llama","num_key_value_heads":3,{}}}"#,
            &BASE.replace("\"num_key_value_heads\":2,", "")
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("num_key_value_heads"), "{err}");
    }
}
