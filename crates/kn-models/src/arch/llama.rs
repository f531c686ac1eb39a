//! The Llama family (`LlamaForCausalLM`, `MistralForCausalLM`, `Qwen2ForCausalLM`) weight map:
//! one map for the three, which transformers saves under the same names; their differences
//! (sliding windows, biases, head tying) are values of the [`ArchConfig`].
//! <https://github.com/huggingface/transformers/blob/v4.57.6/src/transformers/models/llama/modeling_llama.py>
//!
//! | checkpoint | here |
//! |---|---|
//! | `model.embed_tokens.weight` | `Embeddings::word` (no position table: RoPE in attention) |
//! | `model.layers.N.input_layernorm` / `post_attention_layernorm` | `ln_attn` / `ln_ffn` (pre, RMSNorm) |
//! | `model.layers.N.self_attn.{q,k,v,o}_proj` | `attn.{q,k,v,o}` (transposed; GQA: k/v have `n_kv_heads` heads) |
//! | `model.layers.N.mlp.gate_proj` / `up_proj` | `ffn_gate` / `ffn_in` (transposed) |
//! | `model.layers.N.mlp.down_proj` | `ffn_out` (transposed): row `i` is neuron `i`'s value vector |
//! | `model.norm`, `lm_head.weight` (or tied `embed_tokens`) | `head` |
//!
//! The neuron is the input of `down_proj`, `silu(gate(x)) ⊙ up(x)` (TransformerLens
//! `blocks.{l}.mlp.hook_post`); EasyEdit's KN hooks `gate_proj`'s output, before the activation
//! and the product.

use kn_core::Objective;

use super::{Layout, Loader};
use crate::error::LoadError;
use crate::nn::{Attention, Block, DualMatmul, Embeddings, LmHead, NormPlacement, Rotary};
use crate::transformer::Transformer;

/// Builds a Llama-family model with its LM head.
pub fn load<B: DualMatmul>(l: &mut Loader<'_, B>) -> Result<Transformer<B>, LoadError> {
    let c = l.cfg.clone();
    let (d, f) = (c.d_model, c.d_ff);
    let (q_width, kv_width) = (c.n_heads * c.head_dim, c.n_kv_heads * c.head_dim);
    let rope = c.rope.as_ref().map(|r| Rotary::new(r.theta, c.head_dim, r.scaling.as_ref()));
    let (word, unembed) = l.embeddings_and_unembedding("model.embed_tokens.weight", "lm_head.weight")?;
    let embeddings = Embeddings { word, position: None, token_type: None, norm: None };
    let mut blocks = Vec::with_capacity(c.n_layers);
    for i in 0..c.n_layers {
        let n = format!("model.layers.{i}");
        let a = format!("{n}.self_attn");
        let attn = Attention {
            q: l.linear(&format!("{a}.q_proj"), d, q_width, Layout::OutIn, c.qkv_bias)?,
            k: l.linear(&format!("{a}.k_proj"), d, kv_width, Layout::OutIn, c.qkv_bias)?,
            v: l.linear(&format!("{a}.v_proj"), d, kv_width, Layout::OutIn, c.qkv_bias)?,
            o: l.linear(&format!("{a}.o_proj"), q_width, d, Layout::OutIn, c.o_bias)?,
            n_heads: c.n_heads,
            n_kv_heads: c.n_kv_heads,
            head_dim: c.head_dim,
            scale: c.attn_scale[i],
            kind: c.attention[i],
            rope: rope.clone(),
        };
        blocks.push(Block {
            norm: NormPlacement::Pre,
            ln_attn: l.norm(&format!("{n}.input_layernorm"))?,
            ln_ffn: l.norm(&format!("{n}.post_attention_layernorm"))?,
            attn,
            ffn_in: l.linear(&format!("{n}.mlp.up_proj"), d, f, Layout::OutIn, c.mlp_bias)?,
            ffn_gate: Some(l.linear(&format!("{n}.mlp.gate_proj"), d, f, Layout::OutIn, c.mlp_bias)?),
            act: c.activation,
            ffn_out: l.linear(&format!("{n}.mlp.down_proj"), f, d, Layout::OutIn, c.mlp_bias)?,
        });
    }
    let head = LmHead { final_norm: Some(l.norm("model.norm")?), transform: None, unembed, bias: None };
    Ok(Transformer { embeddings, blocks, head, objective: Objective::CausalLm, max_positions: c.max_positions })
}
