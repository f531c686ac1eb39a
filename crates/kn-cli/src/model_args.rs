//! Arguments shared by every command that loads a model.

use std::path::PathBuf;

use anyhow::{anyhow, Context, Result};
use kn_models::backend::{self, AutodiffBackend};
use kn_models::{load_model, HubOptions, LoadOptions, ModelBundle};

/// Which model, and where to run it.
#[derive(Debug, Clone, clap::Args)]
pub struct ModelArgs {
    /// A local folder (config.json + weights + tokenizer) or a Hugging Face Hub name
    /// (bert-base-uncased, gpt2, EleutherAI/gpt-neo-125M, ...).
    #[arg(long, short = 'm')]
    pub model: String,
    /// Folder with the tokenizer files, when not beside the weights.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Checkpoint tensors under this prefix may stay unused (repeatable), e.g. `cls.species.`.
    #[arg(long = "ignore-prefix")]
    pub ignore_prefix: Vec<String>,
    /// Never download: use the Hub cache only (also HF_HUB_OFFLINE=1).
    #[arg(long)]
    pub offline: bool,
    /// Hub revision (branch, tag or commit).
    #[arg(long)]
    pub revision: Option<String>,
    /// Hub cache folder (default: HF_HUB_CACHE, HF_HOME/hub, ~/.cache/huggingface/hub).
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// Device: cpu (ndarray); cpu, cuda, cuda:N (tch); default, cpu, gpu, gpu:N (wgpu); cuda,
    /// cuda:N (cuda). `default`: the CPU on ndarray and tch, the preferred adapter on wgpu, GPU 0
    /// on cuda.
    #[arg(long, default_value = "default")]
    pub device: String,
}

/// The backend every command runs on.
pub type B = AutodiffBackend;

impl ModelArgs {
    /// Loads the model on the chosen device.
    pub fn load(&self) -> Result<ModelBundle<B>> {
        // `default`: the CPU on ndarray and tch, the preferred adapter on wgpu, GPU 0 on cuda.
        let device = backend::device(&self.device).map_err(|e| anyhow!(e))?;
        let opts = LoadOptions {
            hub: HubOptions {
                cache_dir: self.cache_dir.clone(),
                offline: self.offline,
                revision: self.revision.clone(),
            },
            ignore_prefixes: self.ignore_prefix.clone(),
            tokenizer_dir: self.tokenizer.clone(),
        };
        load_model::<B>(&self.model, &opts, &device).with_context(|| format!("loading model '{}'", self.model))
    }
}
