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
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    match commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// clap's errors as one `error:` line (help and version are printed as clap prints them).
fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        e.exit();
    }
    eprintln!("{}", kn_progress::one_line_error(&e.render().to_string()));
    ExitCode::from(2)
}
