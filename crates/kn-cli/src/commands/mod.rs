//! One file per command.

mod predict;

use anyhow::Result;

use crate::cli::{Cli, Cmd};

/// Runs the parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    match cli.cmd {
        Cmd::Predict(a) => predict::run(a),
    }
}

/// Prints a JSON value on stdout.
pub fn emit(value: &serde_json::Value) -> Result<()> {
    println!("{}", serde_json::to_string(value)?);
    Ok(())
}
