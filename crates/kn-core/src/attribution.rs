//! Attribution settings and the backend-free result type.

use serde::{Deserialize, Serialize};

use crate::quadrature::Quadrature;
use crate::{KnError, NeuronId};

/// How neurons are scored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// Integrated gradients from a zero baseline (Dai et al.).
    #[default]
    IntegratedGradients,
    /// The raw activation at the target position (EAI `max_activations`).
    MaxActivations,
    /// Gradient × activation at the unmodified activation (one IG step at α = 1).
    GradientTimesActivation,
}

/// What is differentiated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectiveFn {
    /// The target's softmax probability (the paper, EAI).
    #[default]
    Prob,
    /// Its log-probability.
    LogProb,
}

/// How the pieces of a multi-piece masked-LM target combine into one objective.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PieceCombination {
    /// Joint probability `Π_j p_j` (sum of log-probs with [`ObjectiveFn::LogProb`]).
    #[default]
    Joint,
    /// Mean over pieces of `p_j` (or of `log p_j`).
    Mean,
}

/// Attribution settings. Defaults: 20 steps in batches of 20, EAI's quadrature, probability.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AttributionConfig {
    /// Scoring method.
    pub method: Method,
    /// Quadrature points (integrated gradients only).
    pub steps: usize,
    /// Points evaluated together in one batch (`steps % batch_size == 0`, as EAI requires).
    pub batch_size: usize,
    /// Quadrature rule.
    pub quadrature: Quadrature,
    /// Probability or log-probability.
    pub objective: ObjectiveFn,
    /// Multi-piece masked targets.
    pub pieces: PieceCombination,
    /// Causal models: run only the target row through the upper layers, reusing the prompt's
    /// keys and values (exact; off only to check that it is).
    #[serde(default = "yes")]
    pub reuse_prefix: bool,
    /// Memory bound of one backward pass, in row·block evaluations: layers whose tails fit
    /// together are differentiated in one pass, sharing one head product (faster, more memory;
    /// about 90 KB per unit at bert-base width). 1 runs each layer alone.
    #[serde(default = "default_rows_per_pass")]
    pub max_rows_per_pass: usize,
    /// Queries of different prompts stacked into one pass, at most this many (1: each query
    /// runs its own passes). Queries stack when they share their length, target positions and
    /// number of target pieces: their tails then run as one batch, every product taller by
    /// that factor, which is what keeps a GPU busy (a CPU gains little: its products are
    /// already tall). Scores equal the unstacked ones within float rounding (1e-6 relative).
    /// [`AttributionConfig::max_rows_per_pass`] bounds a stacked pass too: raise it with this.
    ///
    /// Left out of the serialised settings when 1, so that settings recorded before it existed
    /// (run fingerprints) read back equal.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub max_stacked_prompts: usize,
}

fn one() -> usize {
    1
}

fn is_one(n: &usize) -> bool {
    *n == 1
}

fn default_rows_per_pass() -> usize {
    4096
}

fn yes() -> bool {
    true
}

impl Default for AttributionConfig {
    fn default() -> Self {
        Self {
            method: Method::IntegratedGradients,
            steps: 20,
            batch_size: 20,
            quadrature: Quadrature::EaiLinspace,
            objective: ObjectiveFn::Prob,
            pieces: PieceCombination::Joint,
            reuse_prefix: true,
            max_rows_per_pass: default_rows_per_pass(),
            max_stacked_prompts: 1,
        }
    }
}

impl AttributionConfig {
    /// Rejects zero steps or batch size and steps not divisible by the batch size.
    pub fn validate(&self) -> Result<(), KnError> {
        if self.steps == 0 || self.batch_size == 0 {
            return Err(KnError::InvalidSetting("steps and batch size must be positive".into()));
        }
        if self.max_rows_per_pass == 0 {
            return Err(KnError::InvalidSetting("max rows per pass must be positive".into()));
        }
        if self.max_stacked_prompts == 0 {
            return Err(KnError::InvalidSetting("max stacked prompts must be positive".into()));
        }
        if !self.steps.is_multiple_of(self.batch_size) {
            return Err(KnError::InvalidSetting(format!(
                "steps ({}) must be divisible by the batch size ({})",
                self.steps, self.batch_size
            )));
        }
        Ok(())
    }
}

/// IG completeness of one layer: `Σ_i score_i` against `f(a) − f(0)`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Completeness {
    /// Objective with the layer's activations as they are.
    pub f_full: f32,
    /// Objective with the layer's activations at the target position zeroed.
    pub f_zero: f32,
    /// Sum of the layer's scores.
    pub sum_scores: f32,
    /// `sum_scores − (f_full − f_zero)`.
    pub delta: f32,
}

/// Scores of every FFN neuron for one prompt and target; backend-free and serde-serialisable.
///
/// # Shapes
/// - `scores`: `[n_layers][d_ff]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attribution {
    /// Score of neuron `(l, i)` at `scores[l][i]`.
    pub scores: Vec<Vec<f32>>,
    /// The target's token ids.
    pub target_ids: Vec<u32>,
    /// Probability of the whole target under the unmodified model (joint over pieces / tokens).
    pub base_prob: f32,
    /// Probability of each target token (per piece, or per teacher-forced step).
    pub token_probs: Vec<f32>,
    /// Settings used.
    pub config: AttributionConfig,
    /// Per-layer completeness (integrated gradients only; averaged over teacher-forced steps).
    pub completeness: Option<Vec<Completeness>>,
}

impl Attribution {
    /// Number of layers.
    pub fn n_layers(&self) -> usize {
        self.scores.len()
    }

    /// Neurons per layer.
    pub fn d_ff(&self) -> usize {
        self.scores.first().map_or(0, Vec::len)
    }

    /// Score of one neuron.
    pub fn get(&self, n: NeuronId) -> Option<f32> {
        self.scores.get(n.layer).and_then(|l| l.get(n.index)).copied()
    }

    /// Largest score.
    pub fn max(&self) -> f32 {
        self.scores.iter().flatten().copied().fold(f32::NEG_INFINITY, f32::max)
    }

    /// The `k` highest-scoring neurons, best first.
    pub fn top_k(&self, k: usize) -> Vec<(NeuronId, f32)> {
        let mut all: Vec<(NeuronId, f32)> = self
            .scores
            .iter()
            .enumerate()
            .flat_map(|(l, row)| row.iter().enumerate().map(move |(i, &s)| (NeuronId::new(l, i), s)))
            .collect();
        all.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        all.truncate(k);
        all
    }
}
