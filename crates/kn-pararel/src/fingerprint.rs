//! What a run is of: the model, the fact set and every setting, recorded in the output folder
//! so that a restart with anything different refuses to append to the old results.

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// The identity of a run's inputs and settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fingerprint {
    /// `--model` as given, and a digest of the files it loaded from (names, sizes and the
    /// first and last MiB of each), or `planted`.
    pub model: String,
    /// FNV-1a digest of the model files.
    pub model_digest: String,
    /// The fact-set file and the FNV-1a digest of its bytes.
    pub dataset: String,
    /// Digest of the fact set.
    pub dataset_digest: String,
    /// `--relations`.
    pub relations: Vec<String>,
    /// Every evaluation setting.
    pub settings: serde_json::Value,
}

/// FNV-1a, 64 bits: a digest to tell inputs apart, not a cryptographic one.
fn fnv(h: &mut u64, bytes: &[u8]) {
    for &b in bytes {
        *h = (*h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
}

const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// Digest of a file's whole content.
pub fn file_digest(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let mut h = OFFSET;
    fnv(&mut h, &bytes);
    Ok(format!("{h:016x}"))
}

/// Digest of a model: for a local file or folder, every file's name and size and its first and
/// last MiB (weights differ there when they differ at all, and reading gigabytes is avoided);
/// for a Hub name, the name only.
pub fn model_digest(model: &str) -> Result<String> {
    let path = Path::new(model);
    let mut files: Vec<std::path::PathBuf> = if path.is_dir() {
        std::fs::read_dir(path)
            .with_context(|| format!("reading {}", path.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect()
    } else if path.is_file() {
        vec![path.to_path_buf()]
    } else {
        Vec::new()
    };
    files.sort();
    let mut h = OFFSET;
    fnv(&mut h, model.as_bytes());
    const MIB: u64 = 1 << 20;
    for f in files {
        use std::io::{Read, Seek, SeekFrom};
        let mut file = std::fs::File::open(&f).with_context(|| format!("reading {}", f.display()))?;
        let len = file.metadata()?.len();
        fnv(&mut h, f.file_name().map(|n| n.as_encoded_bytes()).unwrap_or_default());
        fnv(&mut h, &len.to_le_bytes());
        let mut buf = Vec::new();
        file.by_ref().take(MIB).read_to_end(&mut buf)?;
        if len > 2 * MIB {
            file.seek(SeekFrom::Start(len - MIB))?;
            file.read_to_end(&mut buf)?;
        } else {
            file.read_to_end(&mut buf)?;
        }
        fnv(&mut h, &buf);
    }
    Ok(format!("{h:016x}"))
}

impl Fingerprint {
    /// Records `self` as `path`, or, when a previous run of this shard recorded one there and
    /// left results, checks that it is the same run.
    pub fn record_or_check(&self, path: &Path, has_results: bool) -> Result<()> {
        if has_results && path.is_file() {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            let old: Fingerprint = serde_json::from_str(&text)
                .with_context(|| format!("{} is not a run fingerprint (from an older kn-pararel?)", path.display()))?;
            let mut diff = Vec::new();
            if old.model != self.model || old.model_digest != self.model_digest {
                diff.push(format!("model {} (was {})", self.model, old.model));
            }
            if old.dataset_digest != self.dataset_digest || old.relations != self.relations {
                diff.push(format!(
                    "fact set {} {:?} (was {} {:?})",
                    self.dataset, self.relations, old.dataset, old.relations
                ));
            }
            if old.settings != self.settings {
                diff.push(format!("settings {} (was {})", self.settings, old.settings));
            }
            if !diff.is_empty() {
                bail!(
                    "{} holds results of another run: different {}; use a new --out folder",
                    path.parent().unwrap_or(path).display(),
                    diff.join("; ")
                );
            }
            return Ok(());
        }
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_string_pretty(self)?)
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp(settings: serde_json::Value) -> Fingerprint {
        Fingerprint {
            model: "m".into(),
            model_digest: "1".into(),
            dataset: "d.json".into(),
            dataset_digest: "2".into(),
            relations: vec![],
            settings,
        }
    }

    #[test]
    fn a_restart_with_other_settings_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("run.json");
        fp(serde_json::json!({"steps": 20})).record_or_check(&path, false).unwrap();
        fp(serde_json::json!({"steps": 20})).record_or_check(&path, true).unwrap();
        let err = fp(serde_json::json!({"steps": 10})).record_or_check(&path, true).unwrap_err().to_string();
        assert!(err.contains("settings") && err.contains("new --out"), "{err}");
        let mut other = fp(serde_json::json!({"steps": 20}));
        other.model_digest = "9".into();
        assert!(other.record_or_check(&path, true).unwrap_err().to_string().contains("model"));
        // Without results the new run's fingerprint replaces the old one.
        fp(serde_json::json!({"steps": 10})).record_or_check(&path, false).unwrap();
    }
}
