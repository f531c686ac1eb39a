//! Typed errors for loading models, configs, weights and tokenizers.

use std::path::PathBuf;

/// Everything that can go wrong while loading or preparing a model.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A JSON file did not parse, or did not have the expected fields.
    #[error("invalid JSON in {path}: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The parser error.
        #[source]
        source: serde_json::Error,
    },
    /// config.json parsed but its values are inconsistent or unsupported.
    #[error("invalid config {path}: {reason}")]
    Config {
        /// The config file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// An architecture this crate does not implement.
    #[error(
        "unsupported architecture '{model_type}' in {path} (supported: bert, gpt2, gpt_neo, llama, mistral, qwen2)"
    )]
    UnsupportedArch {
        /// `model_type` from config.json.
        model_type: String,
        /// The config file.
        path: PathBuf,
    },
    /// A model folder without a weight file.
    #[error("no weights in {dir}: expected model.safetensors, pytorch_model.bin or a sharded index of either")]
    NoWeights {
        /// The folder searched.
        dir: PathBuf,
    },
    /// A weight file that cannot be decoded (truncated, corrupt, wrong format).
    #[error("corrupt weight file {path}: {reason}")]
    CorruptWeights {
        /// The file.
        path: PathBuf,
        /// The decoder's message.
        reason: String,
    },
    /// A GGUF file that cannot be read or describes something unsupported.
    #[error("GGUF {path}: {reason}")]
    Gguf {
        /// The file (or the folder that holds several).
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A tensor with a dtype we cannot convert to f32 (an integer or bool buffer where a
    /// weight belongs, or an exotic float type).
    #[error("tensor '{name}' has dtype {dtype}, not a float type this loader reads (f32, f16, bf16, f64)")]
    UnsupportedDtype {
        /// Tensor name.
        name: String,
        /// Its dtype.
        dtype: String,
    },
    /// A tensor the architecture needs is not in the checkpoint.
    #[error("missing tensor '{name}' in the checkpoint")]
    MissingTensor {
        /// Full tensor name as the checkpoint would spell it.
        name: String,
    },
    /// A tensor has a different shape from the one the config implies.
    #[error("tensor '{name}' has shape {got:?}, expected {expected:?} from config.json")]
    ShapeMismatch {
        /// Tensor name.
        name: String,
        /// The shape config.json implies.
        expected: Vec<usize>,
        /// The shape in the file.
        got: Vec<usize>,
    },
    /// A tensor contains NaN or infinite values.
    #[error("tensor '{name}' contains {count} non-finite values (NaN or inf)")]
    NonFinite {
        /// Tensor name.
        name: String,
        /// How many values are not finite.
        count: usize,
    },
    /// Tensors the architecture does not use and that are not known buffers.
    #[error("unexpected tensors in the checkpoint (not used by the model; pass them as ignored prefixes to load anyway): {names:?}")]
    UnexpectedTensors {
        /// Their names.
        names: Vec<String>,
    },
    /// No tokenizer files in the folder.
    #[error("no tokenizer in {dir}: expected tokenizer.json, vocab.txt, or vocab.json + merges.txt")]
    NoTokenizer {
        /// The folder searched.
        dir: PathBuf,
    },
    /// The tokenizer library failed.
    #[error("tokenizer {path}: {reason}")]
    Tokenizer {
        /// The tokenizer file.
        path: PathBuf,
        /// Its message.
        reason: String,
    },
    /// A model name that is neither a folder nor a Hub repository we could resolve.
    #[error("cannot resolve model '{name}': {reason}")]
    Resolve {
        /// What the user passed.
        name: String,
        /// Why it failed.
        reason: String,
    },
}

/// Errors while turning text into model input.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TextError {
    /// A masked-LM prompt without a mask token.
    #[error("the prompt has no {mask} token (a masked language model needs one where the target goes): {prompt:?}")]
    NoMask {
        /// The prompt.
        prompt: String,
        /// The mask token's text.
        mask: String,
    },
    /// A causal-LM prompt with a mask token.
    #[error("the prompt contains {mask}, but a causal model predicts the token after the prompt: {prompt:?}")]
    UnexpectedMask {
        /// The prompt.
        prompt: String,
        /// The mask token's text.
        mask: String,
    },
    /// A masked-LM prompt with more than one mask (and a one-piece target).
    #[error("the prompt has {count} {mask} tokens; expected exactly {expected}: {prompt:?}")]
    MaskCount {
        /// The prompt.
        prompt: String,
        /// The mask token's text.
        mask: String,
        /// Masks found.
        count: usize,
        /// Masks expected.
        expected: usize,
    },
    /// Empty text where text is needed.
    #[error("{what} is empty")]
    Empty {
        /// What was empty ("prompt", "target").
        what: &'static str,
    },
    /// Text the vocabulary cannot represent without the unknown token.
    #[error("'{piece}' in {text:?} is not in the vocabulary (it would become {unk})")]
    Unknown {
        /// The text given.
        text: String,
        /// The piece that maps to the unknown token.
        piece: String,
        /// The unknown token's text.
        unk: String,
    },
    /// A causal prompt whose own tokens change when the target follows it.
    #[error(
        "the prompt {prompt:?} is tokenized differently once {target:?} follows it (does it end in a space?): \
         end the prompt where a word ends, or pass the target's exact spelling with --raw-target"
    )]
    TargetBoundary {
        /// The prompt.
        prompt: String,
        /// The target.
        target: String,
    },
    /// A sequence longer than the position embeddings.
    #[error("the input has {len} tokens; the model accepts at most {max}")]
    TooLong {
        /// Tokens in the input.
        len: usize,
        /// Model limit.
        max: usize,
    },
    /// The tokenizer failed.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// The encoded prompt and target do not form a valid query for the model.
    #[error(transparent)]
    Query(#[from] kn_core::KnError),
}
