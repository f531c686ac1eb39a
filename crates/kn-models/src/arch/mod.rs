//! Per-architecture weight maps: which checkpoint tensor goes where, with the layout
//! normalised (transposed, split) here and nowhere else.

pub mod bert;
pub mod gpt2;
pub mod gpt_neo;

use burn::tensor::backend::Backend;

use crate::config::ArchConfig;
use crate::error::LoadError;
use crate::nn::{LayerNorm, Linear};
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
pub struct Loader<'a, B: Backend> {
    /// The checkpoint's remaining tensors.
    pub weights: &'a mut WeightMap,
    /// Target device.
    pub device: &'a B::Device,
    /// The normalised config.
    pub cfg: &'a ArchConfig,
}

impl<B: Backend> Loader<'_, B> {
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
        let w = match layout {
            Layout::OutIn => self.raw(&format!("{name}.weight"), &[d_out, d_in])?.transpose(),
            Layout::InOut => self.raw(&format!("{name}.weight"), &[d_in, d_out])?,
        };
        let bias = if bias { Some(self.vector(&format!("{name}.bias"), d_out)?) } else { None };
        Ok(Linear { weight: w.into_tensor(self.device), bias })
    }

    /// A LayerNorm at `name` (`weight`/`bias`, or the old `gamma`/`beta`).
    pub fn layer_norm(&mut self, name: &str) -> Result<LayerNorm<B>, LoadError> {
        let d = self.cfg.d_model;
        let (g, b) =
            if self.weights.contains(&format!("{name}.gamma")) { ("gamma", "beta") } else { ("weight", "bias") };
        Ok(LayerNorm {
            gamma: self.vector(&format!("{name}.{g}"), d)?,
            beta: self.vector(&format!("{name}.{b}"), d)?,
            eps: self.cfg.eps,
        })
    }

    /// The transposed unembedding `[d_model, vocab]`: `explicit` if the checkpoint has it
    /// (an untied or duplicated head), else the tied token embedding `tied` (`[vocab, d_model]`).
    pub fn unembedding(&mut self, explicit: &str, tied: &RawTensor) -> Result<burn::tensor::Tensor<B, 2>, LoadError> {
        let (v, d) = (self.cfg.vocab_size, self.cfg.d_model);
        let w = self.weights.take_opt(explicit, &[v, d])?.unwrap_or_else(|| tied.clone());
        Ok(w.transpose().into_tensor(self.device))
    }
}

/// The prefix under which a checkpoint stores the base model: `with` if `probe` exists under it.
pub fn detect_prefix(weights: &WeightMap, with: &'static str, probe: &str) -> &'static str {
    if weights.contains(&format!("{with}{probe}")) {
        with
    } else {
        ""
    }
}
