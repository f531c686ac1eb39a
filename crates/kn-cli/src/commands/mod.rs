//! One file per command.

mod attribute;
mod bench;
mod intervene;
mod models;
mod neurons;
mod outcome;
mod predict;

use anyhow::Result;

use crate::cli::{Cli, Cmd};

/// Runs the parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    match cli.cmd {
        Cmd::Predict(a) => predict::run(a),
        Cmd::Attribute(a) => attribute::run(a),
        Cmd::Neurons(a) => neurons::run(a),
        Cmd::Suppress(a) => intervene::activations(a, None),
        Cmd::Enhance(a) => {
            let f = a.factor;
            intervene::activations(a.common, Some(f))
        }
        Cmd::Erase(a) => intervene::erase_cmd(a),
        Cmd::Edit(a) => intervene::edit_cmd(a),
        Cmd::Bench(a) => bench::run(a),
        Cmd::InitRandom(a) => models::init_random(a),
        Cmd::Models => models::run(),
    }
}
