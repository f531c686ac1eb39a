//! Where a model comes from: a local folder, or a Hugging Face Hub name resolved through the
//! standard Hub cache (`HF_HUB_CACHE`, else `HF_HOME/hub`, else `~/.cache/huggingface/hub`),
//! downloading into it unless offline (`HF_HUB_OFFLINE=1`).

use std::path::{Path, PathBuf};

use hf_hub::{Cache, Repo, RepoType};

use crate::error::LoadError;

/// Options for resolving a Hub name.
#[derive(Debug, Clone, Default)]
pub struct HubOptions {
    /// Cache folder; `None` reads the environment as `huggingface_hub` does.
    pub cache_dir: Option<PathBuf>,
    /// Never touch the network (also set by `HF_HUB_OFFLINE=1`).
    pub offline: bool,
    /// Git revision (branch, tag or commit); `main` when `None`.
    pub revision: Option<String>,
}

/// The cache folder `huggingface_hub` would use.
pub fn default_cache_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("HF_HUB_CACHE") {
        return PathBuf::from(p);
    }
    if let Some(p) = std::env::var_os("HF_HOME") {
        return PathBuf::from(p).join("hub");
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
    home.join(".cache").join("huggingface").join("hub")
}

fn offline_from_env() -> bool {
    std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| matches!(v.as_str(), "1" | "true" | "TRUE" | "yes" | "ON" | "on"))
}

/// Files a model folder may hold; the first of each group that exists is enough.
const TOKENIZER_FILES: &[&str] = &["tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "merges.txt"];
const WEIGHT_FILES: &[&str] =
    &["model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json"];

/// Resolves `name` to a local folder holding config.json, weights and tokenizer files.
///
/// An existing folder is used as is. Otherwise `name` is a Hub repository id (`gpt2`,
/// `EleutherAI/gpt-neo-125M`): its cached snapshot is used when it holds `config.json` and
/// weights; else, unless offline, the files are downloaded into the cache.
pub fn resolve(name: &str, opts: &HubOptions) -> Result<PathBuf, LoadError> {
    let path = Path::new(name);
    if path.is_dir() {
        return Ok(path.to_path_buf());
    }
    if name.is_empty() || name.starts_with('.') || name.starts_with('/') || name.split('/').count() > 2 {
        return Err(LoadError::Resolve { name: name.into(), reason: "no such folder".into() });
    }
    let cache = Cache::new(opts.cache_dir.clone().unwrap_or_else(default_cache_dir));
    let revision = opts.revision.clone().unwrap_or_else(|| "main".to_string());
    let repo = Repo::with_revision(name.to_string(), RepoType::Model, revision);
    let cached = cache.repo(repo.clone());
    if let Some(config) = cached.get("config.json") {
        if WEIGHT_FILES.iter().any(|f| cached.get(f).is_some()) {
            return snapshot_dir(&config, name);
        }
    }
    if opts.offline || offline_from_env() {
        return Err(LoadError::Resolve {
            name: name.into(),
            reason: format!(
                "not a folder, and not complete in the Hub cache {} (offline mode: nothing downloaded)",
                cache.path().display()
            ),
        });
    }
    download(name, cache, repo)
}

fn snapshot_dir(config: &Path, name: &str) -> Result<PathBuf, LoadError> {
    config
        .parent()
        .map(Path::to_path_buf)
        .ok_or_else(|| LoadError::Resolve { name: name.into(), reason: "bad cache layout".into() })
}

#[cfg(feature = "hub")]
fn download(name: &str, cache: Cache, repo: Repo) -> Result<PathBuf, LoadError> {
    let fail = |reason: String| LoadError::Resolve { name: name.into(), reason };
    let api = hf_hub::api::sync::ApiBuilder::from_cache(cache)
        .with_progress(true)
        .build()
        .map_err(|e| fail(e.to_string()))?;
    let repo = api.repo(repo);
    let config = repo.get("config.json").map_err(|e| fail(format!("config.json: {e}")))?;
    for f in TOKENIZER_FILES {
        // Tokenizer files are optional one by one; the tokenizer loader says what is missing.
        let _ = repo.get(f);
    }
    let mut got_weights = false;
    for f in WEIGHT_FILES {
        if let Ok(p) = repo.get(f) {
            got_weights = true;
            if f.ends_with(".index.json") {
                let dir = p.parent().map(Path::to_path_buf).unwrap_or_default();
                for shard in crate::weights::weight_files(&dir)? {
                    if let Some(file) = shard.file_name().and_then(|s| s.to_str()) {
                        repo.get(file).map_err(|e| fail(format!("{file}: {e}")))?;
                    }
                }
            }
            break;
        }
    }
    if !got_weights {
        return Err(fail("the repository has no model.safetensors or pytorch_model.bin".into()));
    }
    snapshot_dir(&config, name)
}

#[cfg(not(feature = "hub"))]
fn download(name: &str, cache: Cache, _repo: Repo) -> Result<PathBuf, LoadError> {
    let _ = TOKENIZER_FILES;
    Err(LoadError::Resolve {
        name: name.into(),
        reason: format!(
            "not in the Hub cache {}, and this build has no downloader (enable the `hub` feature)",
            cache.path().display()
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lays out `models--{org}--{name}/snapshots/{rev}/…` and `refs/main` as huggingface_hub does.
    fn fake_cache(root: &Path, repo: &str, files: &[&str]) -> PathBuf {
        let folder = root.join(format!("models--{}", repo.replace('/', "--")));
        let commit = "0123456789abcdef0123456789abcdef01234567";
        std::fs::create_dir_all(folder.join("refs")).unwrap();
        std::fs::write(folder.join("refs").join("main"), commit).unwrap();
        let snap = folder.join("snapshots").join(commit);
        std::fs::create_dir_all(&snap).unwrap();
        for f in files {
            std::fs::write(snap.join(f), "{}").unwrap();
        }
        snap
    }

    #[test]
    fn hub_names_resolve_to_the_cached_snapshot_offline() {
        let tmp = tempfile::tempdir().unwrap();
        let snap = fake_cache(tmp.path(), "EleutherAI/gpt-neo-125M", &["config.json", "model.safetensors"]);
        let opts = HubOptions { cache_dir: Some(tmp.path().to_path_buf()), offline: true, revision: None };
        assert_eq!(resolve("EleutherAI/gpt-neo-125M", &opts).unwrap(), snap);
    }

    #[test]
    fn an_incomplete_snapshot_offline_is_an_error_naming_the_cache() {
        let tmp = tempfile::tempdir().unwrap();
        fake_cache(tmp.path(), "gpt2", &["config.json"]);
        let opts = HubOptions { cache_dir: Some(tmp.path().to_path_buf()), offline: true, revision: None };
        let err = resolve("gpt2", &opts).unwrap_err().to_string();
        assert!(err.contains("gpt2") && err.contains("offline"), "{err}");
    }

    #[test]
    fn folders_win_over_hub_names() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("m");
        std::fs::create_dir_all(&dir).unwrap();
        let opts = HubOptions { offline: true, ..Default::default() };
        assert_eq!(resolve(dir.to_str().unwrap(), &opts).unwrap(), dir);
    }
}
