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

use crate::nn::DualMatmul;

use super::{load_gpt, Layout, Loader};
use crate::error::LoadError;
use crate::nn::Attention;
use crate::transformer::Transformer;

/// Builds GPT-Neo with its LM head.
pub fn load<B: DualMatmul>(l: &mut Loader<'_, B>) -> Result<Transformer<B>, LoadError> {
    load_gpt(l, Layout::OutIn, |l, n, i| {
        let (d, c) = (l.cfg.d_model, l.cfg.clone());
        let a = format!("{n}.attn.attention");
        Ok(Attention {
            q: l.linear(&format!("{a}.q_proj"), d, d, Layout::OutIn, false)?,
            k: l.linear(&format!("{a}.k_proj"), d, d, Layout::OutIn, false)?,
            v: l.linear(&format!("{a}.v_proj"), d, d, Layout::OutIn, false)?,
            o: l.linear(&format!("{a}.out_proj"), d, d, Layout::OutIn, true)?,
            n_heads: c.n_heads,
            n_kv_heads: c.n_heads,
            head_dim: c.head_dim,
            scale: c.attn_scale[i],
            kind: c.attention[i],
            rope: None,
        })
    })
}
