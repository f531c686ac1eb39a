//! GPT-2 (`GPT2LMHeadModel`, `GPT2Model`) weight map.
//! <https://github.com/huggingface/transformers/blob/v4.46.0/src/transformers/models/gpt2/modeling_gpt2.py>
//!
//! | checkpoint | here |
//! |---|---|
//! | `transformer.{wte,wpe}.weight` | `Embeddings` |
//! | `transformer.h.N.ln_1` / `ln_2` | `ln_attn` / `ln_ffn` (pre) |
//! | `transformer.h.N.attn.c_attn` `[d, 3d]` | split into `attn.{q,k,v}` (Conv1D: no transpose) |
//! | `transformer.h.N.attn.c_proj` | `attn.o` (no transpose) |
//! | `transformer.h.N.mlp.c_fc` / `c_proj` | `ffn_in` / `ffn_out` (no transpose) |
//! | `transformer.ln_f`, `lm_head.weight` (or tied `wte`) | `head` |

use crate::nn::DualMatmul;

use super::{load_gpt, Layout, Loader};
use crate::error::LoadError;
use crate::nn::{Attention, Linear};
use crate::transformer::Transformer;

/// Builds GPT-2 with its LM head.
pub fn load<B: DualMatmul>(l: &mut Loader<'_, B>) -> Result<Transformer<B>, LoadError> {
    load_gpt(l, Layout::InOut, |l, n, i| {
        let (d, c) = (l.cfg.d_model, l.cfg.clone());
        let w = l.raw(&format!("{n}.attn.c_attn.weight"), &[d, 3 * d])?;
        let b = l.raw(&format!("{n}.attn.c_attn.bias"), &[3 * d])?;
        let part = |k: usize| {
            Linear::from_raw(
                w.columns(k * d, (k + 1) * d),
                Some(b.range(k * d, (k + 1) * d).into_tensor(l.device)),
                l.device,
            )
        };
        Ok(Attention {
            q: part(0),
            k: part(1),
            v: part(2),
            o: l.linear(&format!("{n}.attn.c_proj"), d, d, Layout::InOut, true)?,
            n_heads: c.n_heads,
            n_kv_heads: c.n_heads,
            head_dim: c.head_dim,
            scale: c.attn_scale[i],
            kind: c.attention[i],
            rope: None,
        })
    })
}
