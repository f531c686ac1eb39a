//! Where the tests find PARAREL's raw files.
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
