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

use burn::tensor::backend::Backend;

use kn_core::Objective;

use super::{detect_prefix, Layout, Loader};
use crate::error::LoadError;
use crate::nn::{Attention, Block, Embeddings, Linear, LmHead, NormPlacement};
use crate::transformer::Transformer;

/// Builds GPT-2 with its LM head.
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
        let w = l.raw(&format!("{n}.attn.c_attn.weight"), &[d, 3 * d])?;
        let b = l.raw(&format!("{n}.attn.c_attn.bias"), &[3 * d])?;
        let part = |k: usize| Linear {
            weight: w.columns(k * d, (k + 1) * d).into_tensor(l.device),
            bias: Some(b.range(k * d, (k + 1) * d).into_tensor(l.device)),
        };
        let attn = Attention {
            q: part(0),
            k: part(1),
            v: part(2),
            o: l.linear(&format!("{n}.attn.c_proj"), d, d, Layout::InOut, true)?,
            n_heads: c.n_heads,
            scale: c.attn_scale[i],
            kind: c.attention[i],
        };
        blocks.push(Block {
            norm: NormPlacement::Pre,
            ln_attn: l.layer_norm(&format!("{n}.ln_1"))?,
            ln_ffn: l.layer_norm(&format!("{n}.ln_2"))?,
            attn,
            ffn_in: l.linear(&format!("{n}.mlp.c_fc"), d, c.d_ff, Layout::InOut, true)?,
            act: c.activation,
            ffn_out: l.linear(&format!("{n}.mlp.c_proj"), c.d_ff, d, Layout::InOut, true)?,
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
