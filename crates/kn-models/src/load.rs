//! Loading a complete model (config, weights, tokenizer) from a folder or a Hub name.

use crate::nn::DualMatmul;
use std::path::{Path, PathBuf};

use crate::arch::{self, Loader};
use crate::config::{Arch, ArchConfig, HfConfig};
use crate::error::LoadError;
use crate::source::{resolve, HubOptions};
use crate::tokenizer::TextTokenizer;
use crate::transformer::Transformer;
use crate::weights::WeightMap;

/// How to find and load a model.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Hub resolution settings.
    pub hub: HubOptions,
    /// Checkpoint tensors under these prefixes may stay unused (e.g. `cls.species.` for
    /// AntiBERTy's extra heads); anything else unused is an error.
    pub ignore_prefixes: Vec<String>,
    /// Folder holding the tokenizer files, when not the model folder.
    pub tokenizer_dir: Option<PathBuf>,
}

/// A loaded model with what describes it.
#[derive(Debug, Clone)]
pub struct ModelBundle<B: DualMatmul> {
    /// The network.
    pub model: Transformer<B>,
    /// Its tokenizer, when the folder has one (some checkpoints ship only ids).
    pub tokenizer: Option<TextTokenizer>,
    /// The normalised config.
    pub config: ArchConfig,
    /// The folder it was loaded from.
    pub dir: PathBuf,
}

/// Resolves `name` (a folder or a Hub id) and loads model and tokenizer on `device`.
pub fn load_model<B: DualMatmul>(
    name: &str,
    opts: &LoadOptions,
    device: &B::Device,
) -> Result<ModelBundle<B>, LoadError> {
    let dir = resolve(name, &opts.hub)?;
    let (model, config) = load_dir(&dir, &opts.ignore_prefixes, device)?;
    let tok_dir = opts.tokenizer_dir.clone().unwrap_or_else(|| dir.clone());
    let tokenizer = match TextTokenizer::from_dir(&tok_dir) {
        Ok(t) => Some(t),
        Err(LoadError::NoTokenizer { .. }) if opts.tokenizer_dir.is_none() => None,
        Err(e) => return Err(e),
    };
    Ok(ModelBundle { model, tokenizer, config, dir })
}

/// Loads config.json and the weights of a model folder, failing on any missing, misshapen or
/// unexpected tensor.
pub fn load_dir<B: DualMatmul>(
    dir: &Path,
    ignore_prefixes: &[String],
    device: &B::Device,
) -> Result<(Transformer<B>, ArchConfig), LoadError> {
    let config_path = dir.join("config.json");
    if !dir.is_dir() {
        return Err(LoadError::Io {
            path: dir.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such folder"),
        });
    }
    let cfg = HfConfig::from_file(&config_path)?.to_arch(&config_path)?;
    let mut weights = WeightMap::from_dir(dir)?.ignore_prefixes(ignore_prefixes);
    let model = build(&cfg, &mut weights, device)?;
    weights.finish()?;
    Ok((model, cfg))
}

/// Builds the architecture of `cfg` from `weights` (which keeps what was not used).
pub fn build<B: DualMatmul>(
    cfg: &ArchConfig,
    weights: &mut WeightMap,
    device: &B::Device,
) -> Result<Transformer<B>, LoadError> {
    let mut loader = Loader { weights, device, cfg };
    match cfg.arch {
        Arch::Bert => arch::bert::load(&mut loader),
        Arch::Gpt2 => arch::gpt2::load(&mut loader),
        Arch::GptNeo => arch::gpt_neo::load(&mut loader),
        Arch::Llama | Arch::Mistral | Arch::Qwen2 => arch::llama::load(&mut loader),
    }
}
