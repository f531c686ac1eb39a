//! # kn-models
//!
//! BERT, GPT-2, GPT-Neo and the Llama family (Llama 2/3, SmolLM2, Mistral, Qwen2) ported to
//! [burn](https://burn.dev), loading Hugging Face checkpoints (safetensors or PyTorch `.bin`,
//! sharded or not) from a folder or by Hub name, or GGUF files, with their tokenizers. Every architecture is loaded into one [`Transformer`] that implements
//! [`kn_core::KnowledgeModel`]; the differences are data, normalised at load time.
#![warn(missing_docs)]

pub mod arch;
pub mod backend;
pub mod config;
#[cfg(feature = "cuda")]
pub mod cuda_probe;
pub mod error;
pub mod gguf;
pub mod host_memory;
pub mod load;
pub mod nn;
pub mod prompt;
pub mod random;
pub mod source;
pub mod tokenizer;
pub mod transformer;
pub mod weights;

pub use config::{Arch, ArchConfig, HfConfig};
pub use error::{LoadError, TextError};
pub use load::{load_dir, load_model, LoadOptions, ModelBundle};
pub use source::HubOptions;
pub use tokenizer::TextTokenizer;
pub use transformer::Transformer;
pub use weights::WeightMap;
