//! Keyword arguments → the core's settings (attribution, thresholds, sharing, edit rule).

use kn_core::{AttributionConfig, EditRule, Method, ObjectiveFn, PieceCombination, Quadrature, Sharing, Threshold};
use pyo3::prelude::*;

use crate::errors::SettingError;

/// The attribution options of every scoring call, a dict from the Python layer: the Python
/// library's names (`batch_size`, `steps`) and ours (`method`, `quadrature`, `objective`,
/// `pieces`, `raw_target`).
#[derive(Debug, FromPyObject)]
#[pyo3(from_item_all)]
pub struct Attr {
    batch_size: usize,
    steps: usize,
    method: String,
    quadrature: String,
    objective: String,
    pieces: String,
    /// Causal models: encode the target on its own instead of as it follows the prompt.
    pub raw_target: bool,
}

impl Attr {
    /// The core's configuration (validated).
    pub fn config(&self) -> PyResult<AttributionConfig> {
        attribution(self.batch_size, self.steps, &self.method, &self.quadrature, &self.objective, &self.pieces)
    }
}

fn attribution(
    batch_size: usize,
    steps: usize,
    method: &str,
    quadrature: &str,
    objective: &str,
    pieces: &str,
) -> PyResult<AttributionConfig> {
    let cfg = AttributionConfig {
        method: match method {
            "integrated_grads" | "ig" => Method::IntegratedGradients,
            "max_activations" => Method::MaxActivations,
            "grad_times_activation" => Method::GradientTimesActivation,
            m => return Err(bad("attribution_method", m, "integrated_grads, max_activations, grad_times_activation")),
        },
        steps,
        batch_size,
        quadrature: match quadrature {
            "eai" | "linspace" => Quadrature::EaiLinspace,
            "left" => Quadrature::Left,
            "right" => Quadrature::Right,
            "midpoint" => Quadrature::Midpoint,
            "trapezoid" => Quadrature::Trapezoid,
            q => return Err(bad("quadrature", q, "eai, left, right, midpoint, trapezoid")),
        },
        objective: match objective {
            "prob" => ObjectiveFn::Prob,
            "log_prob" => ObjectiveFn::LogProb,
            o => return Err(bad("objective", o, "prob, log_prob")),
        },
        pieces: match pieces {
            "joint" => PieceCombination::Joint,
            "mean" => PieceCombination::Mean,
            p => return Err(bad("pieces", p, "joint, mean")),
        },
        ..AttributionConfig::default()
    };
    cfg.validate().map_err(crate::errors::core)?;
    Ok(cfg)
}

/// The coarse rule from exactly one of `threshold`, `adaptive_threshold`, `percentile` (the
/// Python library asserts this; here it is a `SettingError`).
pub fn threshold(threshold: Option<f32>, adaptive: Option<f32>, percentile: Option<f32>) -> PyResult<Threshold> {
    let rule = match (threshold, adaptive, percentile) {
        (Some(t), None, None) => Threshold::Absolute(t),
        (None, Some(r), None) => Threshold::Adaptive(r),
        (None, None, Some(p)) => Threshold::Percentile(p),
        _ => return Err(SettingError::new_err("give exactly one of threshold / adaptive_threshold / percentile")),
    };
    rule.validate().map_err(crate::errors::core)?;
    Ok(rule)
}

/// Sharing: a fixed `p` in [0, 1), or the paper's adaptive p.
pub fn sharing(p: f32, adaptive_p: bool) -> PyResult<Sharing> {
    if adaptive_p {
        return Ok(Sharing::paper());
    }
    if !(0.0..1.0).contains(&p) {
        return Err(SettingError::new_err(format!("p should be a float between 0 and 1, not {p}")));
    }
    Ok(Sharing::Fixed(p))
}

/// The edit rule: the Python library's (`lambda` 2) or the paper's (λ1 = 1, λ2 = 8, norm-scaled).
pub fn edit_rule(rule: &str) -> PyResult<EditRule> {
    match rule {
        "eai" => Ok(EditRule::eai()),
        "paper" => Ok(EditRule::paper()),
        r => Err(bad("rule", r, "eai, paper")),
    }
}

fn bad(what: &str, got: &str, choices: &str) -> PyErr {
    SettingError::new_err(format!("{what} {got:?} is not one of {choices}"))
}
