//! Argument groups shared by several commands, and their conversion to kn-core settings.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use clap::ValueEnum;
use kn_core::{
    AttributionConfig, KnowledgeModel, Method, NeuronId, ObjectiveFn, PieceCombination, Quadrature, Threshold,
};
use kn_models::prompt::{prompt_queries, MultiToken, PromptQueries};
use kn_models::ModelBundle;

use crate::model_args::B;

/// `--method`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum MethodArg {
    /// Integrated gradients (Dai et al.).
    Ig,
    /// Raw activations (EAI `max_activations`).
    MaxActivations,
    /// Gradient × activation.
    GradTimesAct,
}

/// `--quadrature`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum QuadratureArg {
    /// linspace(0, 1, m) with weights 1/m (EleutherAI; default).
    Eai,
    /// Left Riemann sum (the paper's code).
    Left,
    /// Right Riemann sum.
    Right,
    /// Midpoint rule.
    Midpoint,
    /// Trapezoid rule.
    Trapezoid,
}

/// Integrated-gradients settings.
#[derive(Debug, Clone, clap::Args)]
pub struct IgArgs {
    /// Quadrature points of the path integral.
    #[arg(long, default_value_t = 20, allow_hyphen_values = true)]
    pub steps: usize,
    /// Points per batch (must divide --steps).
    #[arg(long, default_value_t = 20, allow_hyphen_values = true)]
    pub batch_size: usize,
    /// Attribution method.
    #[arg(long, value_enum, default_value = "ig")]
    pub method: MethodArg,
    /// Quadrature rule.
    #[arg(long, value_enum, default_value = "eai")]
    pub quadrature: QuadratureArg,
    /// Differentiate the log-probability instead of the probability.
    #[arg(long)]
    pub log_prob: bool,
    /// Multi-piece masked targets: score the mean of the pieces' probabilities instead of their
    /// joint probability.
    #[arg(long)]
    pub mean_pieces: bool,
    /// Memory bound of one backward pass (row·block evaluations, ~90 KB each at bert-base
    /// width): layers that fit are differentiated together. Lower it to save memory; 1 = one
    /// layer per pass.
    #[arg(long, default_value_t = 4096)]
    pub max_rows_per_pass: usize,
    /// Prompts of the same length and target positions stacked into one pass, at most this
    /// many (1 = each prompt alone). For GPUs: raise --max-rows-per-pass with it.
    #[arg(long, default_value_t = 1)]
    pub stack_prompts: usize,
}

impl IgArgs {
    /// The kn-core settings.
    pub fn config(&self) -> Result<AttributionConfig> {
        let cfg = AttributionConfig {
            method: match self.method {
                MethodArg::Ig => Method::IntegratedGradients,
                MethodArg::MaxActivations => Method::MaxActivations,
                MethodArg::GradTimesAct => Method::GradientTimesActivation,
            },
            steps: self.steps,
            batch_size: self.batch_size,
            quadrature: match self.quadrature {
                QuadratureArg::Eai => Quadrature::EaiLinspace,
                QuadratureArg::Left => Quadrature::Left,
                QuadratureArg::Right => Quadrature::Right,
                QuadratureArg::Midpoint => Quadrature::Midpoint,
                QuadratureArg::Trapezoid => Quadrature::Trapezoid,
            },
            objective: if self.log_prob { ObjectiveFn::LogProb } else { ObjectiveFn::Prob },
            pieces: if self.mean_pieces { PieceCombination::Mean } else { PieceCombination::Joint },
            reuse_prefix: true,
            max_rows_per_pass: self.max_rows_per_pass,
            max_stacked_prompts: self.stack_prompts,
        };
        cfg.validate()?;
        Ok(cfg)
    }
}

/// How the target text is tokenised.
#[derive(Debug, Clone, clap::Args)]
pub struct TargetOpts {
    /// Refuse targets of several tokens instead of expanding [MASK] / teacher forcing.
    #[arg(long)]
    pub single_token: bool,
    /// Causal models: encode the target on its own, exactly as given (default: the tokens it
    /// has after the prompt, `prompt + " " + target`).
    #[arg(long)]
    pub raw_target: bool,
}

impl TargetOpts {
    /// Encodes a prompt/target pair for the loaded model.
    pub fn queries(&self, bundle: &ModelBundle<B>, prompt: &str, target: &str) -> Result<PromptQueries> {
        let tok = bundle.tokenizer.as_ref().ok_or_else(|| {
            anyhow!("the model folder {} has no tokenizer files: pass --tokenizer DIR", bundle.dir.display())
        })?;
        let multi = if self.single_token { MultiToken::Refuse } else { MultiToken::Expand };
        let model = &bundle.model;
        prompt_queries(tok, &model.dims(), model.objective(), prompt, target, multi, self.raw_target)
            .with_context(|| format!("prompt {prompt:?}, target {target:?}"))
    }
}

/// A finite number (NaN and infinities are refused at parse time, where clap names the flag).
pub fn finite(s: &str) -> std::result::Result<f32, String> {
    match s.trim().parse::<f32>() {
        Ok(v) if v.is_finite() => Ok(v),
        Ok(v) => Err(format!("{v} is not a finite number")),
        Err(e) => Err(format!("{s:?} is not a number ({e})")),
    }
}

/// `--threshold` / `--adaptive-threshold` / `--percentile`: exactly one (default adaptive 0.3).
#[derive(Debug, Clone, clap::Args)]
#[group(multiple = false)]
pub struct ThresholdArgs {
    /// Coarse neurons score above ratio × the maximum score (EAI 0.3, the paper 0.2).
    #[arg(long, value_parser = finite, allow_hyphen_values = true)]
    pub adaptive_threshold: Option<f32>,
    /// Coarse neurons score above this value.
    #[arg(long, value_parser = finite, allow_hyphen_values = true)]
    pub threshold: Option<f32>,
    /// Coarse neurons score above this percentile (0-100) of all scores.
    #[arg(long, value_parser = finite, allow_hyphen_values = true)]
    pub percentile: Option<f32>,
}

impl ThresholdArgs {
    /// The kn-core rule.
    pub fn rule(&self) -> Threshold {
        match (self.adaptive_threshold, self.threshold, self.percentile) {
            (_, Some(t), _) => Threshold::Absolute(t),
            (_, _, Some(p)) => Threshold::Percentile(p),
            (Some(r), _, _) => Threshold::Adaptive(r),
            _ => Threshold::Adaptive(0.3),
        }
    }
}

/// Reads neurons from a JSON file or inline JSON: `[[layer, index], ...]` or an object with a
/// `"neurons"` key (the output of `kn-cli neurons`).
pub fn read_neurons(spec: &str) -> Result<Vec<NeuronId>> {
    let text = if Path::new(spec).is_file() {
        std::fs::read_to_string(spec).with_context(|| format!("reading neurons file {spec}"))?
    } else if spec.trim_start().starts_with(['[', '{']) {
        spec.to_string()
    } else {
        bail!("--neurons {spec:?} is neither a file nor inline JSON");
    };
    let value: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("neurons {spec:?} are not valid JSON"))?;
    let list = value.get("neurons").cloned().unwrap_or(value);
    serde_json::from_value(list).with_context(|| format!("neurons {spec:?}: expected [[layer, index], ...]"))
}

/// Writes JSON to `--out` (atomically: a temporary file renamed) or stdout.
pub fn write_json(value: &serde_json::Value, out: Option<&PathBuf>) -> Result<()> {
    let text = serde_json::to_string(value)?;
    match out {
        Some(path) => {
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, text + "\n").with_context(|| format!("cannot write {}", tmp.display()))?;
            std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
        }
        None => println!("{text}"),
    }
    Ok(())
}

/// Reads prompts from a file: one per line, blank lines and `#` comments skipped.
pub fn read_lines(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(String::from).collect())
}
