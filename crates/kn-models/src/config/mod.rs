//! `config.json`: serde mirrors of the Hugging Face configs (their field names), validated and
//! converted to one [`ArchConfig`].

pub mod llama;

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::LoadError;
use crate::nn::{Activation, AttentionKind, NormKind, RopeScaling};
use crate::weights::read_to_string;
pub use llama::LlamaConfig;

/// The architectures this crate implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Arch {
    /// BERT with its masked-LM head.
    Bert,
    /// GPT-2 with its LM head tied to `wte`.
    Gpt2,
    /// GPT-Neo with per-layer global/local attention.
    GptNeo,
    /// Llama 2/3, TinyLlama, SmolLM: RMSNorm, rotary positions, grouped-query attention, SwiGLU.
    Llama,
    /// Mistral: Llama with sliding-window attention.
    Mistral,
    /// Qwen2: Llama with q/k/v biases (and optionally sliding layers).
    Qwen2,
}

impl Arch {
    /// The `model_type` string of config.json.
    pub fn model_type(self) -> &'static str {
        match self {
            Self::Bert => "bert",
            Self::Gpt2 => "gpt2",
            Self::GptNeo => "gpt_neo",
            Self::Llama => "llama",
            Self::Mistral => "mistral",
            Self::Qwen2 => "qwen2",
        }
    }

    /// Every architecture, in the order `kn-cli models` lists them.
    pub const ALL: [Arch; 6] = [Arch::Bert, Arch::Gpt2, Arch::GptNeo, Arch::Llama, Arch::Mistral, Arch::Qwen2];
}

/// BERT's config.json (`BertConfig`).
#[derive(Debug, Clone, Deserialize)]
pub struct BertConfig {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Residual width.
    pub hidden_size: usize,
    /// Layers.
    pub num_hidden_layers: usize,
    /// Heads.
    pub num_attention_heads: usize,
    /// FFN width.
    pub intermediate_size: usize,
    /// Activation name.
    #[serde(default = "gelu")]
    pub hidden_act: String,
    /// Position table size.
    pub max_position_embeddings: usize,
    /// Segment table size.
    #[serde(default = "two")]
    pub type_vocab_size: usize,
    /// LayerNorm epsilon.
    #[serde(default = "eps_bert")]
    pub layer_norm_eps: f64,
    /// Only "absolute" is supported.
    #[serde(default)]
    pub position_embedding_type: Option<String>,
}

/// GPT-2's config.json (`GPT2Config`).
#[derive(Debug, Clone, Deserialize)]
pub struct Gpt2Config {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Residual width.
    pub n_embd: usize,
    /// Layers.
    pub n_layer: usize,
    /// Heads.
    pub n_head: usize,
    /// FFN width (`null` = 4 × n_embd).
    #[serde(default)]
    pub n_inner: Option<usize>,
    /// Activation name.
    #[serde(default = "gelu_new")]
    pub activation_function: String,
    /// Position table size.
    pub n_positions: usize,
    /// LayerNorm epsilon.
    #[serde(default = "eps_gpt")]
    pub layer_norm_epsilon: f64,
    /// Scale scores by 1/sqrt(d_head).
    #[serde(default = "yes")]
    pub scale_attn_weights: bool,
    /// Additionally scale by 1/(layer + 1).
    #[serde(default)]
    pub scale_attn_by_inverse_layer_idx: bool,
}

/// GPT-Neo's config.json (`GPTNeoConfig`).
#[derive(Debug, Clone, Deserialize)]
pub struct GptNeoConfig {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Residual width.
    pub hidden_size: usize,
    /// Layers.
    pub num_layers: usize,
    /// Heads.
    pub num_heads: usize,
    /// FFN width (`null` = 4 × hidden_size).
    #[serde(default)]
    pub intermediate_size: Option<usize>,
    /// Activation name.
    #[serde(default = "gelu_new")]
    pub activation_function: String,
    /// Position table size.
    pub max_position_embeddings: usize,
    /// LayerNorm epsilon.
    #[serde(default = "eps_gpt")]
    pub layer_norm_epsilon: f64,
    /// Local attention window.
    #[serde(default = "window")]
    pub window_size: usize,
    /// `[[["global", "local"], 12]]`: patterns and repeat counts.
    #[serde(default)]
    pub attention_types: Vec<(Vec<String>, usize)>,
    /// The expanded per-layer list, when present.
    #[serde(default)]
    pub attention_layers: Vec<String>,
}

fn gelu() -> String {
    "gelu".into()
}
fn gelu_new() -> String {
    "gelu_new".into()
}
fn two() -> usize {
    2
}
fn eps_bert() -> f64 {
    1e-12
}
fn eps_gpt() -> f64 {
    1e-5
}
fn yes() -> bool {
    true
}
fn window() -> usize {
    256
}

/// A parsed config.json.
#[derive(Debug, Clone)]
pub enum HfConfig {
    /// `model_type: bert`.
    Bert(BertConfig),
    /// `model_type: gpt2`.
    Gpt2(Gpt2Config),
    /// `model_type: gpt_neo`.
    GptNeo(GptNeoConfig),
    /// `model_type: llama`, `mistral` or `qwen2` (one mirror; the architecture says which).
    Llama(Arch, LlamaConfig),
}

/// The architecture-independent view of a config.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ArchConfig {
    /// Which architecture.
    pub arch: Arch,
    /// Residual width.
    pub d_model: usize,
    /// FFN width.
    pub d_ff: usize,
    /// Query heads.
    pub n_heads: usize,
    /// Key/value heads (fewer than `n_heads` with grouped-query attention).
    pub n_kv_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// Layers.
    pub n_layers: usize,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Longest input (position table size, or context length with rotary positions).
    pub max_positions: usize,
    /// Segment table size (BERT).
    pub type_vocab_size: Option<usize>,
    /// FFN activation (of the gate, in a gated FFN).
    pub activation: Activation,
    /// Whether the FFN is gated: `act(gate(x)) ⊙ up(x)`.
    pub gated_ffn: bool,
    /// LayerNorm or RMSNorm.
    pub norm: NormKind,
    /// Norm epsilon.
    pub eps: f64,
    /// Attention pattern of each layer.
    pub attention: Vec<AttentionKind>,
    /// Score scale of each layer.
    pub attn_scale: Vec<f64>,
    /// Rotary positions; `None` for a learned position table.
    pub rope: Option<Rope>,
    /// Bias on the q/k/v projections (Llama family; BERT/GPT loaders know their own).
    pub qkv_bias: bool,
    /// Bias on the attention output projection.
    pub o_bias: bool,
    /// Bias on the FFN projections of a gated FFN.
    pub mlp_bias: bool,
    /// Whether the LM head is the token embedding (an explicit head tensor is then optional).
    pub tie_word_embeddings: bool,
}

/// Rotary position settings.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Rope {
    /// Base of the frequencies (`rope_theta`).
    pub theta: f64,
    /// Long-context rescaling.
    pub scaling: Option<RopeScaling>,
}

impl HfConfig {
    /// Reads and parses `path` (a config.json), dispatching on `model_type`.
    pub fn from_file(path: &Path) -> Result<Self, LoadError> {
        let text = read_to_string(path)?;
        Self::from_json(&text, path)
    }

    /// Parses config.json text; `path` is only used in errors.
    pub fn from_json(text: &str, path: &Path) -> Result<Self, LoadError> {
        let json = |source| LoadError::Json { path: path.to_path_buf(), source };
        let value: serde_json::Value = serde_json::from_str(text).map_err(json)?;
        let model_type = value.get("model_type").and_then(|v| v.as_str()).unwrap_or("").to_string();
        match model_type.as_str() {
            "bert" => Ok(Self::Bert(serde_json::from_value(value).map_err(json)?)),
            "gpt2" => Ok(Self::Gpt2(serde_json::from_value(value).map_err(json)?)),
            "gpt_neo" => Ok(Self::GptNeo(serde_json::from_value(value).map_err(json)?)),
            "llama" => Ok(Self::Llama(Arch::Llama, serde_json::from_value(value).map_err(json)?)),
            "qwen2" => Ok(Self::Llama(Arch::Qwen2, serde_json::from_value(value).map_err(json)?)),
            "mistral" => {
                let mut value = value;
                if let Some(obj) = value.as_object_mut() {
                    obj.entry("sliding_window").or_insert(llama::MISTRAL_DEFAULT_WINDOW.into());
                }
                Ok(Self::Llama(Arch::Mistral, serde_json::from_value(value).map_err(json)?))
            }
            _ => Err(LoadError::UnsupportedArch { model_type, path: path.to_path_buf() }),
        }
    }

    /// Validates and normalises; errors name `path`.
    pub fn to_arch(&self, path: &Path) -> Result<ArchConfig, LoadError> {
        let bad = |reason: String| LoadError::Config { path: PathBuf::from(path), reason };
        let act = |name: &str| Activation::from_hf(name).ok_or_else(|| bad(format!("unsupported activation '{name}'")));
        let cfg = match self {
            Self::Bert(c) => {
                if let Some(t) = c.position_embedding_type.as_deref().filter(|t| *t != "absolute") {
                    return Err(bad(format!("position_embedding_type '{t}' is not supported (only 'absolute')")));
                }
                ArchConfig {
                    arch: Arch::Bert,
                    d_model: c.hidden_size,
                    d_ff: c.intermediate_size,
                    n_heads: c.num_attention_heads,
                    n_layers: c.num_hidden_layers,
                    vocab_size: c.vocab_size,
                    max_positions: c.max_position_embeddings,
                    type_vocab_size: Some(c.type_vocab_size),
                    activation: act(&c.hidden_act)?,
                    eps: c.layer_norm_eps,
                    attention: vec![AttentionKind::Bidirectional; c.num_hidden_layers],
                    attn_scale: vec![head_scale(c.hidden_size, c.num_attention_heads); c.num_hidden_layers],
                    ..learned_positions(c.hidden_size, c.num_attention_heads)
                }
            }
            Self::Gpt2(c) => {
                let base = if c.scale_attn_weights { head_scale(c.n_embd, c.n_head) } else { 1.0 };
                let attn_scale = (0..c.n_layer)
                    .map(|l| if c.scale_attn_by_inverse_layer_idx { base / (l + 1) as f64 } else { base })
                    .collect();
                ArchConfig {
                    arch: Arch::Gpt2,
                    d_model: c.n_embd,
                    d_ff: c.n_inner.unwrap_or(4 * c.n_embd),
                    n_heads: c.n_head,
                    n_layers: c.n_layer,
                    vocab_size: c.vocab_size,
                    max_positions: c.n_positions,
                    type_vocab_size: None,
                    activation: act(&c.activation_function)?,
                    eps: c.layer_norm_epsilon,
                    attention: vec![AttentionKind::Causal; c.n_layer],
                    attn_scale,
                    ..learned_positions(c.n_embd, c.n_head)
                }
            }
            Self::GptNeo(c) => ArchConfig {
                arch: Arch::GptNeo,
                d_model: c.hidden_size,
                d_ff: c.intermediate_size.unwrap_or(4 * c.hidden_size),
                n_heads: c.num_heads,
                n_layers: c.num_layers,
                vocab_size: c.vocab_size,
                max_positions: c.max_position_embeddings,
                type_vocab_size: None,
                activation: act(&c.activation_function)?,
                eps: c.layer_norm_epsilon,
                attention: neo_attention(c).map_err(bad)?,
                attn_scale: vec![1.0; c.num_layers],
                ..learned_positions(c.hidden_size, c.num_heads)
            },
            Self::Llama(arch, c) => c.to_arch(*arch).map_err(bad)?,
        };
        let sizes = [
            ("hidden size", cfg.d_model),
            ("heads", cfg.n_heads),
            ("layers", cfg.n_layers),
            ("vocab_size", cfg.vocab_size),
            ("FFN width", cfg.d_ff),
            ("max positions", cfg.max_positions),
            ("head_dim", cfg.head_dim),
        ];
        if let Some((what, _)) = sizes.iter().find(|(_, v)| *v == 0) {
            return Err(bad(format!("{what} must be positive")));
        }
        if !(cfg.eps > 0.0 && cfg.eps.is_finite()) {
            let field = match cfg.arch {
                Arch::Bert => "layer_norm_eps",
                Arch::Gpt2 | Arch::GptNeo => "layer_norm_epsilon",
                _ => "rms_norm_eps",
            };
            return Err(bad(format!("{field} must be a positive number (got {})", cfg.eps)));
        }
        if cfg.attention.iter().any(|k| *k == AttentionKind::CausalLocal { window: 0 }) {
            return Err(bad("the attention window (window_size / sliding_window) must be positive".into()));
        }
        if cfg.rope.is_none() && cfg.d_model % cfg.n_heads != 0 {
            return Err(bad(format!("hidden size {} is not divisible by {} heads", cfg.d_model, cfg.n_heads)));
        }
        Ok(cfg)
    }
}

/// The fields BERT, GPT-2 and GPT-Neo share: LayerNorm, learned positions, plain FFN, one
/// key/value head per query head, tied head; the loaders set their biases themselves.
/// `arch`, sizes, activation, eps, attention and scales are overwritten by the caller.
fn learned_positions(d_model: usize, n_heads: usize) -> ArchConfig {
    ArchConfig {
        arch: Arch::Bert,
        d_model,
        d_ff: 0,
        n_heads,
        n_kv_heads: n_heads,
        head_dim: d_model / n_heads.max(1),
        n_layers: 0,
        vocab_size: 0,
        max_positions: 0,
        type_vocab_size: None,
        activation: Activation::GeluErf,
        gated_ffn: false,
        norm: NormKind::Layer,
        eps: 0.0,
        attention: Vec::new(),
        attn_scale: Vec::new(),
        rope: None,
        qkv_bias: true,
        o_bias: true,
        mlp_bias: true,
        tie_word_embeddings: true,
    }
}

fn head_scale(d_model: usize, n_heads: usize) -> f64 {
    1.0 / ((d_model / n_heads.max(1)) as f64).sqrt()
}

/// Per-layer attention kinds from `attention_layers` or, failing that, `attention_types`.
fn neo_attention(c: &GptNeoConfig) -> Result<Vec<AttentionKind>, String> {
    let names: Vec<String> = if c.attention_layers.is_empty() {
        c.attention_types.iter().flat_map(|(pat, n)| (0..*n).flat_map(move |_| pat.clone())).collect()
    } else {
        c.attention_layers.clone()
    };
    if names.len() != c.num_layers {
        return Err(format!("attention_layers lists {} layers, num_layers is {}", names.len(), c.num_layers));
    }
    names
        .iter()
        .map(|n| match n.as_str() {
            "global" => Ok(AttentionKind::Causal),
            "local" => Ok(AttentionKind::CausalLocal { window: c.window_size }),
            other => Err(format!("unknown attention type '{other}' (expected global or local)")),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neo_attention_types_expand_per_layer() {
        let text = r#"{"model_type":"gpt_neo","vocab_size":10,"hidden_size":8,"num_layers":4,"num_heads":2,
            "max_position_embeddings":16,"window_size":3,"attention_types":[[["global","local"],2]],
            "intermediate_size":null}"#;
        let cfg = HfConfig::from_json(text, Path::new("config.json")).unwrap().to_arch(Path::new("c")).unwrap();
        assert_eq!(cfg.d_ff, 32);
        assert_eq!(cfg.attention[1], AttentionKind::CausalLocal { window: 3 });
        assert_eq!(cfg.attention[2], AttentionKind::Causal);
        assert_eq!(cfg.attn_scale, vec![1.0; 4]);
    }

    #[test]
    fn unsupported_model_type_is_a_typed_error() {
        let err = HfConfig::from_json(r#"{"model_type":"mamba"}"#, Path::new("x/config.json")).unwrap_err();
        assert!(matches!(err, LoadError::UnsupportedArch { ref model_type, .. } if model_type == "mamba"));
        assert!(err.to_string().contains("x/config.json"));
    }

    #[test]
    fn heads_must_divide_the_width() {
        let text = r#"{"model_type":"gpt2","vocab_size":10,"n_embd":10,"n_layer":1,"n_head":3,"n_positions":8}"#;
        let err = HfConfig::from_json(text, Path::new("c")).unwrap().to_arch(Path::new("c")).unwrap_err();
        assert!(err.to_string().contains("not divisible"));
    }
}
