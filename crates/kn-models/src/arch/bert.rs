//! BERT (`BertForMaskedLM`, `BertForPreTraining`, `BertLMHeadModel`) weight map.
//! <https://github.com/huggingface/transformers/blob/v4.46.0/src/transformers/models/bert/modeling_bert.py>
//!
//! | checkpoint | here |
//! |---|---|
//! | `bert.embeddings.{word,position,token_type}_embeddings.weight` | `Embeddings` |
//! | `bert.encoder.layer.N.attention.self.{query,key,value}` | `attn.{q,k,v}` (transposed) |
//! | `bert.encoder.layer.N.attention.output.dense` / `.LayerNorm` | `attn.o` / `ln_attn` (post) |
//! | `bert.encoder.layer.N.intermediate.dense` | `ffn_in` (transposed) |
//! | `bert.encoder.layer.N.output.dense` / `.LayerNorm` | `ffn_out` (transposed) / `ln_ffn` (post) |
//! | `cls.predictions.transform.*`, `cls.predictions.bias` | `head` (decoder tied to word embeddings) |

use crate::nn::DualMatmul;

use kn_core::Objective;

use super::{detect_prefix, Layout, Loader};
use crate::error::LoadError;
use crate::nn::head::HeadTransform;
use crate::nn::{Attention, Block, Embeddings, LmHead, NormPlacement};
use crate::transformer::Transformer;

/// Builds BERT with its MLM head.
pub fn load<B: DualMatmul>(l: &mut Loader<'_, B>) -> Result<Transformer<B>, LoadError> {
    let c = l.cfg.clone();
    let (d, v) = (c.d_model, c.vocab_size);
    let p = detect_prefix(l.weights, "bert.", "embeddings.word_embeddings.weight");
    let (word, unembed) = l.embeddings_and_unembedding(
        &format!("{p}embeddings.word_embeddings.weight"),
        "cls.predictions.decoder.weight",
    )?;
    let embeddings = Embeddings {
        word,
        position: Some(l.matrix(&format!("{p}embeddings.position_embeddings.weight"), c.max_positions, d)?),
        token_type: Some(l.matrix(
            &format!("{p}embeddings.token_type_embeddings.weight"),
            c.type_vocab_size.unwrap_or(2),
            d,
        )?),
        norm: Some(l.norm(&format!("{p}embeddings.LayerNorm"))?),
    };
    let mut blocks = Vec::with_capacity(c.n_layers);
    for i in 0..c.n_layers {
        let n = format!("{p}encoder.layer.{i}");
        let attn = Attention {
            q: l.linear(&format!("{n}.attention.self.query"), d, d, Layout::OutIn, true)?,
            k: l.linear(&format!("{n}.attention.self.key"), d, d, Layout::OutIn, true)?,
            v: l.linear(&format!("{n}.attention.self.value"), d, d, Layout::OutIn, true)?,
            o: l.linear(&format!("{n}.attention.output.dense"), d, d, Layout::OutIn, true)?,
            n_heads: c.n_heads,
            n_kv_heads: c.n_heads,
            head_dim: c.head_dim,
            scale: c.attn_scale[i],
            kind: c.attention[i],
            rope: None,
        };
        blocks.push(Block {
            norm: NormPlacement::Post,
            ln_attn: l.norm(&format!("{n}.attention.output.LayerNorm"))?,
            ln_ffn: l.norm(&format!("{n}.output.LayerNorm"))?,
            attn,
            ffn_in: l.linear(&format!("{n}.intermediate.dense"), d, c.d_ff, Layout::OutIn, true)?,
            ffn_gate: None,
            act: c.activation,
            ffn_out: l.linear(&format!("{n}.output.dense"), c.d_ff, d, Layout::OutIn, true)?,
        });
    }
    let transform = HeadTransform {
        dense: l.linear("cls.predictions.transform.dense", d, d, Layout::OutIn, true)?,
        act: c.activation,
        norm: l.norm("cls.predictions.transform.LayerNorm")?,
    };
    let bias = l.vector("cls.predictions.bias", v)?;
    // `decoder.bias` is the same parameter as `cls.predictions.bias` in transformers.
    l.weights.take_opt("cls.predictions.decoder.bias", &[v])?;
    let head = LmHead { final_norm: None, transform: Some(transform), unembed, bias: Some(bias) };
    Ok(Transformer { embeddings, blocks, head, objective: Objective::MaskedLm, max_positions: c.max_positions })
}
