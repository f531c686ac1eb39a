//! Damaged or inconsistent checkpoints are typed errors naming what is wrong, never a model with
//! zero-filled, partial or arbitrary weights.

use std::io::{Read, Write};
use std::path::Path;

use crate::common::*;
use kn_models::{load_dir, load_model, LoadError, LoadOptions};

/// Copies `src` (a folder of files) into a new temporary folder.
fn copy_dir(src: &Path) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), tmp.path().join(e.file_name())).unwrap();
    }
    tmp
}

/// Rewrites the zip at `path`, passing each entry's bytes through `edit` (`None` drops it).
fn rewrite_zip(path: &Path, mut edit: impl FnMut(&str, Vec<u8>) -> Option<Vec<u8>>) {
    let bytes = std::fs::read(path).unwrap();
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    let mut out = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for i in 0..archive.len() {
        let mut f = archive.by_index(i).unwrap();
        let name = f.name().to_string();
        let mut data = Vec::new();
        f.read_to_end(&mut data).unwrap();
        if let Some(data) = edit(&name, data) {
            out.start_file(name, opts).unwrap();
            out.write_all(&data).unwrap();
        }
    }
    std::fs::write(path, out.finish().unwrap().into_inner()).unwrap();
}

#[test]
fn a_pytorch_bin_with_a_short_or_missing_storage_is_an_error() {
    for (what, cut) in [("truncated", true), ("deleted", false)] {
        let dir = copy_dir(&fixture("tiny-gpt2"));
        let bin = dir.path().join("pytorch_model.bin");
        let mut done = false;
        rewrite_zip(&bin, |name, data| {
            // The largest storages are the weights; damage the first data record.
            if !done_flag(&mut done, name.contains("/data/") && data.len() > 1000) {
                return Some(data);
            }
            cut.then(|| data[..data.len() / 2].to_vec())
        });
        let err = load_dir::<B>(dir.path(), &[], &Default::default()).unwrap_err();
        assert!(matches!(err, LoadError::CorruptWeights { .. }), "{what} storage: {err}");
        assert!(err.to_string().contains("pytorch_model.bin"), "{what} storage: {err}");
        eprintln!("{what} storage: {err}");
    }
}

/// `true` the first time `cond` holds.
fn done_flag(done: &mut bool, cond: bool) -> bool {
    let first = cond && !*done;
    *done |= cond;
    first
}

#[test]
fn shards_must_agree_with_their_index() {
    let dir = copy_dir(&fixture("tiny-qwen2"));
    let index_path = dir.path().join("model.safetensors.index.json");
    let original = std::fs::read_to_string(&index_path).unwrap();
    let mut index: serde_json::Value = serde_json::from_str(&original).unwrap();
    let map = index["weight_map"].as_object_mut().unwrap();
    let files: Vec<String> = map.values().map(|v| v.as_str().unwrap().to_string()).collect();
    let (name, file) = map.iter().next().map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string())).unwrap();
    let other = files.iter().find(|f| **f != file).unwrap().clone();
    // A tensor the index places in another shard.
    map.insert(name.clone(), other.into());
    std::fs::write(&index_path, index.to_string()).unwrap();
    let err = load_dir::<B>(dir.path(), &[], &Default::default()).unwrap_err().to_string();
    assert!(err.contains(&name) && err.contains("the index names"), "{err}");
    // A tensor the index does not list.
    let mut index: serde_json::Value = serde_json::from_str(&original).unwrap();
    index["weight_map"].as_object_mut().unwrap().remove(&name);
    std::fs::write(&index_path, index.to_string()).unwrap();
    let err = load_dir::<B>(dir.path(), &[], &Default::default()).unwrap_err().to_string();
    assert!(err.contains(&name) && err.contains("not in the index"), "{err}");
}

#[test]
fn an_integer_tensor_where_a_weight_belongs_is_a_typed_error() {
    let dir = copy_dir(&fixture("tiny-llama"));
    let path = dir.path().join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)> =
        st.tensors().into_iter().map(|(n, v)| (n, v.dtype(), v.shape().to_vec(), v.data().to_vec())).collect();
    let victim = tensors.iter_mut().find(|t| t.0 == "model.norm.weight").unwrap();
    let n: usize = victim.2.iter().product();
    (victim.1, victim.3) = (safetensors::Dtype::I32, vec![0u8; 4 * n]);
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .map(|(n, d, s, b)| (n.clone(), safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    safetensors::serialize_to_file(views, None, &path).unwrap();
    let err = load_dir::<B>(dir.path(), &[], &Default::default()).unwrap_err();
    assert!(
        matches!(err, LoadError::UnsupportedDtype { ref name, ref dtype } if name == "model.norm.weight" && dtype == "I32"),
        "{err}"
    );
}

#[test]
fn a_tokenizer_larger_than_the_vocabulary_is_refused_at_load() {
    let opts = LoadOptions { tokenizer_dir: Some(test_models().join("gpt2-bpe")), ..Default::default() };
    let err = load_model::<B>(fixture("tiny-gpt2").to_str().unwrap(), &opts, &Default::default()).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("50257") && msg.contains("97"), "{msg}");
}
