//! `kn-cli`: find, inspect and edit knowledge neurons from the command line.
//!
//! JSON results go to stdout; logs and errors go to stderr. Errors print one line and exit 2.

mod args;
mod cli;
mod commands;
mod model_args;
mod pictures;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
