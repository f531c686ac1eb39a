//! Command-line grammar.

use clap::{Parser, Subcommand};

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
    /// How many predictions.
    #[arg(long, default_value_t = 10)]
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
