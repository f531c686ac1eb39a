//! # kn-core
//!
//! Knowledge neurons (Dai et al., "Knowledge Neurons in Pretrained Transformers", ACL 2022) on
//! [burn](https://burn.dev), generic over the backend: the model interface every architecture
//! implements ([`KnowledgeModel`]), the FFN hook point ([`FfnHook`]), integrated-gradients
//! attribution, neuron selection and interventions.
//!
//! The core names no architecture: layouts are normalised when weights are loaded
//! (see the `kn-models` crate), so every algorithm here is written once.
#![warn(missing_docs)]

pub mod attribution;
pub mod edit;
pub mod error;
pub mod hooks;
pub mod ig;
pub mod intervene;
pub mod model;
pub mod neuron;
pub mod planted;
pub mod predict;
pub mod quadrature;
pub mod query;
pub mod schedule;
pub mod select;
mod tail;

pub use attribution::{Attribution, AttributionConfig, Method, ObjectiveFn, PieceCombination};
pub use edit::{activation_signs, edit, edit_for, edit_signed, erase, EditRule, Fill, WeightUndo};
pub use error::KnError;
pub use hooks::{Capture, FfnHook, NoHook};
pub use ig::{attribute, attribute_many, attribute_many_cancellable, attribute_many_observed, attribute_observed};
pub use intervene::{enhance, measure, measure_batch, probs_batch, suppress, Effect, Outcome, ScaleNeurons, Scope};
pub use model::{forward_hooked, gather_rows, run_layers, KnowledgeModel, ModelDims, ModelInput, Objective};
pub use neuron::NeuronId;
pub use quadrature::Quadrature;
pub use query::Query;
pub use select::{coarse, refine, Refined, Sharing, Threshold};
