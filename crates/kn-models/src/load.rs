//! Loading a complete model (config, weights, tokenizer) from a folder, a GGUF file or a Hub name.

use crate::nn::DualMatmul;
use std::path::{Path, PathBuf};

use crate::arch::{self, Loader};
use crate::config::{Arch, ArchConfig, HfConfig};
use crate::error::LoadError;
use crate::gguf::{self, GgufFile};
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
    /// The folder it was loaded from (the GGUF file's folder for a GGUF model).
    pub dir: PathBuf,
}

/// Resolves `name` (a folder, a `.gguf` file or a Hub id) and loads model and tokenizer on
/// `device`. A folder without config.json that holds one `.gguf` file loads that file.
pub fn load_model<B: DualMatmul>(
    name: &str,
    opts: &LoadOptions,
    device: &B::Device,
) -> Result<ModelBundle<B>, LoadError> {
    let path = Path::new(name);
    if gguf::is_gguf(path) {
        return load_gguf(path, opts, device);
    }
    let dir = resolve(name, &opts.hub)?;
    if !dir.join("config.json").is_file() {
        if let Some(file) = gguf::find_in_dir(&dir)? {
            return load_gguf(&file, opts, device);
        }
    }
    let (model, config) = load_dir(&dir, &opts.ignore_prefixes, device)?;
    let tok_dir = opts.tokenizer_dir.clone().unwrap_or_else(|| dir.clone());
    let tokenizer = match TextTokenizer::from_dir(&tok_dir) {
        Ok(t) => Some(t),
        Err(LoadError::NoTokenizer { .. }) if opts.tokenizer_dir.is_none() => None,
        Err(e) => return Err(e),
    };
    check_vocab(tokenizer.as_ref(), &config)?;
    Ok(ModelBundle { model, tokenizer, config, dir })
}

/// A tokenizer with more tokens than the model has embeddings would hand it ids it cannot
/// embed. (Fewer is common: vocabularies padded for speed, as Qwen2's.)
fn check_vocab(tokenizer: Option<&TextTokenizer>, cfg: &ArchConfig) -> Result<(), LoadError> {
    match tokenizer {
        Some(t) if t.vocab_size() > cfg.vocab_size => Err(LoadError::Tokenizer {
            path: t.source().to_path_buf(),
            reason: format!(
                "the tokenizer has {} tokens but the model only {} embeddings (vocab_size): is it the model's tokenizer?",
                t.vocab_size(),
                cfg.vocab_size
            ),
        }),
        _ => Ok(()),
    }
}

/// Loads a GGUF file: config from its metadata, weights dequantized to f32 (as strictly as a
/// safetensors folder: every tensor used or reported), tokenizer from its metadata (none when
/// the file has no `tokenizer.ggml.model`) unless `opts.tokenizer_dir` names another.
pub fn load_gguf<B: DualMatmul>(
    file: &Path,
    opts: &LoadOptions,
    device: &B::Device,
) -> Result<ModelBundle<B>, LoadError> {
    let gguf = GgufFile::open(file)?;
    let hf = gguf.config()?;
    let cfg = hf.to_arch(file)?;
    let tokenizer = match &opts.tokenizer_dir {
        Some(dir) => Some(TextTokenizer::from_dir(dir)?),
        None if gguf.get("tokenizer.ggml.model").is_none() => None,
        None => Some(gguf.tokenizer()?),
    };
    check_vocab(tokenizer.as_ref(), &cfg)?;
    let mut weights = gguf.weights(&hf)?.ignore_prefixes(&opts.ignore_prefixes);
    let model = build(&cfg, &mut weights, device)?;
    weights.finish()?;
    let dir = file.parent().map(Path::to_path_buf).unwrap_or_default();
    Ok(ModelBundle { model, tokenizer, config: cfg, dir })
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
