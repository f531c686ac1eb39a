//! One file per command.

mod attribute;
mod bench;
mod intervene;
mod models;
mod neurons;
mod outcome;
mod peak;
mod predict;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::cli::{Cli, Cmd};

/// Runs the parsed command line, its output files checked first: a command never computes
/// for minutes to find its result cannot be written.
pub fn run(cli: Cli) -> Result<()> {
    check_outputs(&cli.cmd)?;
    if matches!(cli.cmd, Cmd::Attribute(_) | Cmd::Neurons(_) | Cmd::Bench(_)) {
        // Attribution's temporaries recycled instead of page-faulted afresh in every pass
        // (3-5 % of IG); not for one forward pass, which it slows (kn_models::host_memory).
        kn_models::host_memory::retain_freed_memory();
    }
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

/// The JSON and picture files a command will write.
fn outputs(cmd: &Cmd) -> (Vec<&PathBuf>, Vec<&PathBuf>) {
    match cmd {
        Cmd::Attribute(a) => (a.out.iter().collect(), a.heatmap.iter().collect()),
        Cmd::Neurons(a) => (a.out.iter().collect(), a.plot.iter().collect()),
        Cmd::Suppress(a) => (a.out.iter().collect(), Vec::new()),
        Cmd::Enhance(a) => (a.common.out.iter().collect(), Vec::new()),
        Cmd::Erase(a) => (a.common.out.iter().collect(), Vec::new()),
        Cmd::Edit(a) => (a.common.out.iter().collect(), Vec::new()),
        Cmd::Predict(_) | Cmd::Bench(_) | Cmd::InitRandom(_) | Cmd::Models => (Vec::new(), Vec::new()),
    }
}

fn check_outputs(cmd: &Cmd) -> Result<()> {
    let (json, pictures) = outputs(cmd);
    for p in &pictures {
        kn_plot::Format::from_path(p).with_context(|| format!("picture {}", p.display()))?;
    }
    for p in json.into_iter().chain(pictures) {
        writable(p)?;
    }
    if let Cmd::InitRandom(a) = cmd {
        if a.out.exists() && !is_empty_dir(&a.out) {
            bail!("{} already exists: init-random writes a new folder (remove it or choose another)", a.out.display());
        }
        let parent = parent_of(&a.out);
        if !parent.is_dir() {
            bail!("cannot write {}: the folder {} does not exist", a.out.display(), parent.display());
        }
    }
    Ok(())
}

/// The folder a path's file goes into (`.` for a bare file name).
pub(crate) fn parent_of(path: &Path) -> &Path {
    path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

fn is_empty_dir(path: &Path) -> bool {
    std::fs::read_dir(path).map(|mut d| d.next().is_none()).unwrap_or(false)
}

/// `path` can be written: not a folder, in an existing folder we may create files in (probed
/// with a file created and removed beside it).
fn writable(path: &Path) -> Result<()> {
    if path.is_dir() {
        bail!("cannot write {}: it is a folder", path.display());
    }
    let parent = parent_of(path);
    if !parent.is_dir() {
        bail!("cannot write {}: the folder {} does not exist", path.display(), parent.display());
    }
    let probe = parent.join(format!(".kn-cli-probe-{}", std::process::id()));
    std::fs::write(&probe, b"")
        .with_context(|| format!("cannot write {}: {} is not writable", path.display(), parent.display()))?;
    let _ = std::fs::remove_file(&probe);
    if path.exists() && std::fs::OpenOptions::new().append(true).open(path).is_err() {
        bail!("cannot write {}: the file is read-only", path.display());
    }
    Ok(())
}
