//! Typed errors of the core algorithms.

use crate::NeuronId;

/// Errors raised by attribution, selection and interventions.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum KnError {
    /// A layer index past the model's depth.
    #[error("layer {layer} is out of range: the model has {n_layers} layers")]
    LayerOutOfRange {
        /// The layer asked for.
        layer: usize,
        /// Number of layers of the model.
        n_layers: usize,
    },
    /// A neuron index past the FFN width.
    #[error("neuron {neuron} is out of range: the model has {n_layers} layers of {d_ff} FFN neurons")]
    NeuronOutOfRange {
        /// The offending neuron.
        neuron: NeuronId,
        /// Number of layers.
        n_layers: usize,
        /// FFN width.
        d_ff: usize,
    },
    /// A token position past the sequence.
    #[error("position {pos} is out of range for a sequence of {seq_len} tokens")]
    PositionOutOfRange {
        /// The position asked for.
        pos: usize,
        /// Sequence length.
        seq_len: usize,
    },
    /// A token id past the vocabulary.
    #[error("token id {id} is out of range for a vocabulary of {vocab} tokens")]
    TokenOutOfRange {
        /// The id.
        id: u32,
        /// Vocabulary size.
        vocab: usize,
    },
    /// An empty input where one is needed (no prompts, no target tokens, ...).
    #[error("{what} is empty")]
    Empty {
        /// What was empty.
        what: &'static str,
    },
    /// Inconsistent settings (steps not divisible by the batch size, a ratio outside [0, 1], ...).
    #[error("invalid setting: {0}")]
    InvalidSetting(String),
    /// A number that should be finite is not (NaN or infinite).
    #[error("non-finite value in {what}")]
    NonFinite {
        /// Where it was found.
        what: String,
    },
    /// The caller asked a long computation to stop (Ctrl-C in a notebook).
    #[error("cancelled")]
    Cancelled,
    /// A tensor could not be read back from the backend.
    #[error("could not read tensor data from the backend: {0}")]
    Backend(String),
}
