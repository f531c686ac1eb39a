//! GPT-Neo (`GPTNeoForCausalLM`) weight map.
//! <https://github.com/huggingface/transformers/blob/v4.46.0/src/transformers/models/gpt_neo/modeling_gpt_neo.py>
//!
//! | checkpoint | here |
//! |---|---|
//! | `transformer.{wte,wpe}.weight` | `Embeddings` |
//! | `transformer.h.N.ln_1` / `ln_2` | `ln_attn` / `ln_ffn` (pre) |
//! | `transformer.h.N.attn.attention.{q,k,v}_proj` (no bias) | `attn.{q,k,v}` (transposed) |
//! | `transformer.h.N.attn.attention.out_proj` | `attn.o` (transposed) |
//! | `transformer.h.N.mlp.c_fc` / `c_proj` (nn.Linear) | `ffn_in` / `ffn_out` (transposed) |
//! | `transformer.ln_f`, `lm_head.weight` (or tied `wte`) | `head` |
//!
//! Attention is not scaled by 1/sqrt(d_head), and layers alternate global / local attention as
//! config.json says (the difference lives in `ArchConfig`).

use burn::tensor::backend::Backend;

use kn_core::Objective;

use super::{detect_prefix, Layout, Loader};
use crate::error::LoadError;
use crate::nn::{Attention, Block, Embeddings, LmHead, NormPlacement};
use crate::transformer::Transformer;

/// Builds GPT-Neo with its LM head.
pub fn load<B: Backend>(l: &mut Loader<'_, B>) -> Result<Transformer<B>, LoadError> {
    let c = l.cfg.clone();
    let (d, v) = (c.d_model, c.vocab_size);
    let p = detect_prefix(l.weights, "transformer.", "wte.weight");
    let wte = l.raw(&format!("{p}wte.weight"), &[v, d])?;
    let embeddings = Embeddings {
        word: wte.clone().into_tensor(l.device),
        position: l.matrix(&format!("{p}wpe.weight"), c.max_positions, d)?,
        token_type: None,
        norm: None,
    };
    let mut blocks = Vec::with_capacity(c.n_layers);
    for i in 0..c.n_layers {
        let n = format!("{p}h.{i}");
        let a = format!("{n}.attn.attention");
        let attn = Attention {
            q: l.linear(&format!("{a}.q_proj"), d, d, Layout::OutIn, false)?,
            k: l.linear(&format!("{a}.k_proj"), d, d, Layout::OutIn, false)?,
            v: l.linear(&format!("{a}.v_proj"), d, d, Layout::OutIn, false)?,
            o: l.linear(&format!("{a}.out_proj"), d, d, Layout::OutIn, true)?,
            n_heads: c.n_heads,
            scale: c.attn_scale[i],
            kind: c.attention[i],
        };
        blocks.push(Block {
            norm: NormPlacement::Pre,
            ln_attn: l.layer_norm(&format!("{n}.ln_1"))?,
            ln_ffn: l.layer_norm(&format!("{n}.ln_2"))?,
            attn,
            ffn_in: l.linear(&format!("{n}.mlp.c_fc"), d, c.d_ff, Layout::OutIn, true)?,
            act: c.activation,
            ffn_out: l.linear(&format!("{n}.mlp.c_proj"), c.d_ff, d, Layout::OutIn, true)?,
        });
    }
    let head = LmHead {
        final_norm: Some(l.layer_norm(&format!("{p}ln_f"))?),
        transform: None,
        unembed: l.unembedding("lm_head.weight", &wte)?,
        bias: None,
    };
    Ok(Transformer { embeddings, blocks, head, objective: Objective::CausalLm })
}
