//! Per-architecture weight maps: which checkpoint tensor goes where, with the layout
//! normalised (transposed, split) here and nowhere else.

pub mod bert;
pub mod gpt2;
pub mod gpt_neo;
pub mod llama;

use crate::nn::DualMatmul;

use crate::config::ArchConfig;
use crate::error::LoadError;
use kn_core::Objective;

use crate::nn::{Attention, Block, Embeddings, Linear, LmHead, Norm, NormKind, NormPlacement};
use crate::transformer::Transformer;
use crate::weights::{RawTensor, WeightMap};

/// How a checkpoint stores a projection matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// PyTorch `nn.Linear`: `[out, in]`, transposed at load.
    OutIn,
    /// GPT-2 `Conv1D`: `[in, out]`, kept as is.
    InOut,
}

/// A cursor over a [`WeightMap`] that builds burn modules on `device`, under a name prefix.
pub struct Loader<'a, B: DualMatmul> {
    /// The checkpoint's remaining tensors.
    pub weights: &'a mut WeightMap,
    /// Target device.
    pub device: &'a B::Device,
    /// The normalised config.
    pub cfg: &'a ArchConfig,
}

impl<B: DualMatmul> Loader<'_, B> {
    /// A raw tensor with a shape check.
    pub fn raw(&mut self, name: &str, shape: &[usize]) -> Result<RawTensor, LoadError> {
        self.weights.take(name, shape)
    }

    /// A 1-D tensor.
    pub fn vector(&mut self, name: &str, n: usize) -> Result<burn::tensor::Tensor<B, 1>, LoadError> {
        Ok(self.raw(name, &[n])?.into_tensor(self.device))
    }

    /// A 2-D tensor as stored.
    pub fn matrix(&mut self, name: &str, r: usize, c: usize) -> Result<burn::tensor::Tensor<B, 2>, LoadError> {
        Ok(self.raw(name, &[r, c])?.into_tensor(self.device))
    }

    /// `name.weight` (+ `name.bias` when `bias`) as a `[d_in, d_out]` linear map.
    pub fn linear(
        &mut self,
        name: &str,
        d_in: usize,
        d_out: usize,
        layout: Layout,
        bias: bool,
    ) -> Result<Linear<B>, LoadError> {
        let weight = format!("{name}.weight");
        // Kept as stored where the map keeps `Wᵀ`; else decoded straight into `[in, out]`.
        let (w, transposed) = match layout {
            Layout::OutIn if Linear::<B>::keeps_transposed(d_in, d_out) => (self.raw(&weight, &[d_out, d_in])?, true),
            Layout::OutIn => (self.weights.take_transposed(&weight, &[d_out, d_in])?, false),
            Layout::InOut => (self.raw(&weight, &[d_in, d_out])?, false),
        };
        let bias = if bias { Some(self.vector(&format!("{name}.bias"), d_out)?) } else { None };
        Ok(if transposed {
            Linear::from_transposed(w.into_tensor(self.device), bias)
        } else {
            Linear::from_raw(w, bias, self.device)
        })
    }

    /// The config's norm at `name`: a LayerNorm (`weight`/`bias`, or the old `gamma`/`beta`)
    /// or an RMSNorm (`weight` only).
    pub fn norm(&mut self, name: &str) -> Result<Norm<B>, LoadError> {
        let d = self.cfg.d_model;
        let kind = self.cfg.norm;
        let (g, b) =
            if self.weights.contains(&format!("{name}.gamma")) { ("gamma", "beta") } else { ("weight", "bias") };
        let gamma = self.vector(&format!("{name}.{g}"), d)?;
        let beta = match kind {
            NormKind::Layer => Some(self.vector(&format!("{name}.{b}"), d)?),
            NormKind::Rms => None,
        };
        Ok(Norm { kind, gamma, beta, eps: self.cfg.eps })
    }

    /// The token-embedding table `name` (`[vocab, d_model]`) on the device, and the
    /// unembedding `[d_model, vocab]`: `explicit` if the checkpoint has it and its values differ
    /// from the table's (an untied head), else the table itself, which an untied config
    /// (`tie_word_embeddings: false`) requires to be present.
    ///
    /// Both are read here, so the table is decoded once and never copied: a tied head (or an
    /// explicit one equal to the table, as BERT checkpoints may save it) keeps the embedding
    /// table itself as its `Wᵀ` where maps keep `Wᵀ`.
    pub fn embeddings_and_unembedding(
        &mut self,
        name: &str,
        explicit: &str,
    ) -> Result<(burn::tensor::Tensor<B, 2>, Linear<B>), LoadError> {
        let (v, d) = (self.cfg.vocab_size, self.cfg.d_model);
        let table = self.raw(name, &[v, d])?;
        let w = if self.cfg.tie_word_embeddings {
            self.weights.take_opt(explicit, &[v, d])?
        } else {
            Some(self.weights.take(explicit, &[v, d])?)
        };
        if let Some(w) = w.filter(|w| w.data != table.data) {
            return Ok((table.into_tensor(self.device), Linear::from_raw_transposed(w, None, self.device)));
        }
        if Linear::<B>::keeps_transposed(d, v) {
            let table = table.into_tensor(self.device);
            return Ok((table.clone(), Linear::from_transposed(table, None)));
        }
        // A backend that keeps `[d_in, d_out]`, or a vocabulary narrower than `d_model`: the
        // head is the table transposed (what `Linear::from_raw_transposed` builds then).
        let head = Linear::new(table.transposed().into_tensor(self.device), None);
        Ok((table.into_tensor(self.device), head))
    }
}

/// The prefix under which a checkpoint stores the base model: `with` if `probe` exists under it.
///
/// A synthetic map (random models) takes the prefix: the names of a checkpoint saved by
/// `transformers`' `*ForMaskedLM` / `*ForCausalLM`, which is what `init-random` writes.
pub fn detect_prefix(weights: &WeightMap, with: &'static str, probe: &str) -> &'static str {
    if weights.is_synthetic() || weights.contains(&format!("{with}{probe}")) {
        with
    } else {
        ""
    }
}

/// The GPT family (GPT-2, GPT-Neo): `wte` + `wpe`, pre-LN blocks `h.N` with `ln_1`/`ln_2` and
/// `mlp.c_fc`/`mlp.c_proj` stored in `mlp` layout, `ln_f`, a head tied to `wte` unless
/// `lm_head.weight` is present. `attn(loader, "h.N" with prefix, N)` loads the attention, the
/// only part that differs.
pub fn load_gpt<B: DualMatmul>(
    l: &mut Loader<'_, B>,
    mlp: Layout,
    attn: impl Fn(&mut Loader<'_, B>, &str, usize) -> Result<Attention<B>, LoadError>,
) -> Result<Transformer<B>, LoadError> {
    let c = l.cfg.clone();
    let d = c.d_model;
    let p = detect_prefix(l.weights, "transformer.", "wte.weight");
    let (word, unembed) = l.embeddings_and_unembedding(&format!("{p}wte.weight"), "lm_head.weight")?;
    let embeddings = Embeddings {
        word,
        position: Some(l.matrix(&format!("{p}wpe.weight"), c.max_positions, d)?),
        token_type: None,
        norm: None,
    };
    let mut blocks = Vec::with_capacity(c.n_layers);
    for i in 0..c.n_layers {
        let n = format!("{p}h.{i}");
        blocks.push(Block {
            norm: NormPlacement::Pre,
            ln_attn: l.norm(&format!("{n}.ln_1"))?,
            ln_ffn: l.norm(&format!("{n}.ln_2"))?,
            attn: attn(l, &n, i)?,
            ffn_in: l.linear(&format!("{n}.mlp.c_fc"), d, c.d_ff, mlp, true)?,
            ffn_gate: None,
            act: c.activation,
            ffn_out: l.linear(&format!("{n}.mlp.c_proj"), c.d_ff, d, mlp, true)?,
        });
    }
    let head = LmHead { final_norm: Some(l.norm(&format!("{p}ln_f"))?), transform: None, unembed, bias: None };
    Ok(Transformer { embeddings, blocks, head, objective: Objective::CausalLm, max_positions: c.max_positions })
}
