//! What the tests share: where they find PARAREL's raw files, and running the binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// The raw PARAREL files: `$KN_PARAREL_DATA`, else the `shared/data/pararel` folder beside the
/// checkout, else `.cache/pararel` (what `kn-pararel data --input .cache/pararel --download`
/// fetches from GitHub). `None`, with a message saying what is missing, when none exists: the
/// tests that need the data are then skipped, not failed (GitHub may be unreachable).
pub fn pararel_data() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let candidates: Vec<PathBuf> = match std::env::var_os("KN_PARAREL_DATA") {
        Some(p) => vec![PathBuf::from(p)],
        None => vec![root.join("../shared/data/pararel"), root.join(".cache/pararel")],
    };
    let found = candidates.iter().find(|p| p.join("patterns").is_dir()).cloned();
    if found.is_none() {
        eprintln!(
            "SKIPPED: no PARAREL raw data in {}: set KN_PARAREL_DATA, or run \
             `kn-pararel data --input .cache/pararel --download` (needs GitHub)",
            candidates.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(" or ")
        );
    }
    found
}

/// The kn-pararel binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_kn-pararel")
}

/// Runs `kn-pararel args`, which must succeed; its stdout as JSON.
pub fn kn(args: &[&str]) -> serde_json::Value {
    let out = std::process::Command::new(bin()).args(args).output().expect("kn-pararel runs");
    assert!(out.status.success(), "kn-pararel {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("JSON on stdout")
}

/// Runs `kn-pararel args`, which must fail; its stderr.
pub fn kn_fails(args: &[&str]) -> String {
    let out = std::process::Command::new(bin()).args(args).output().expect("kn-pararel runs");
    assert!(!out.status.success(), "kn-pararel {args:?} should fail");
    String::from_utf8_lossy(&out.stderr).to_string()
}
