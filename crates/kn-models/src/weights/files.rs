//! Reading checkpoint files: safetensors and PyTorch `.bin` (zip), sharded or not, with every
//! byte a tensor needs accounted for and the shard index followed.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use safetensors::{tensor::Dtype, SafeTensors};

use super::RawTensor;
use crate::error::LoadError;

/// The tensors of a checkpoint: float tensors converted to f32, and the names, shapes and
/// dtypes of the others (integer and bool buffers), which no weight may be.
#[derive(Debug, Default)]
pub(crate) struct Checkpoint {
    /// Float tensors.
    pub floats: HashMap<String, RawTensor>,
    /// Non-float tensors: name → (shape, dtype).
    pub others: HashMap<String, (Vec<usize>, String)>,
}

impl Checkpoint {
    fn names(&self) -> impl Iterator<Item = &String> {
        self.floats.keys().chain(self.others.keys())
    }

    fn extend(&mut self, part: Checkpoint) {
        self.floats.extend(part.floats);
        self.others.extend(part.others);
    }
}

/// Reads `model.safetensors`, `pytorch_model.bin`, or the shards named by
/// `model.safetensors.index.json` / `pytorch_model.bin.index.json` (safetensors win). A
/// sharded checkpoint must agree with its index: every tensor in the shard the index names,
/// none in two shards, none the index lists missing.
pub(crate) fn read_checkpoint(dir: &Path) -> Result<Checkpoint, LoadError> {
    let mut out = Checkpoint::default();
    match checkpoint_layout(dir)? {
        Layout::Single(file) => out = read_file(&file)?,
        Layout::Sharded { index, map } => {
            let corrupt = |reason: String| LoadError::CorruptWeights { path: index.clone(), reason };
            let mut files: Vec<&String> = map.values().collect();
            files.sort();
            files.dedup();
            let mut seen: HashMap<String, String> = HashMap::new();
            for file in files {
                let part = read_file(&dir.join(file))?;
                for name in part.names() {
                    if let Some(first) = seen.insert(name.clone(), file.clone()) {
                        return Err(corrupt(format!("tensor '{name}' is in both {first} and {file}")));
                    }
                    match map.get(name) {
                        Some(f) if f == file => {}
                        Some(f) => return Err(corrupt(format!("tensor '{name}' is in {file}, the index names {f}"))),
                        None => return Err(corrupt(format!("tensor '{name}' of {file} is not in the index"))),
                    }
                }
                out.extend(part);
            }
            if let Some((name, file)) = map.iter().find(|(n, _)| !seen.contains_key(*n)) {
                return Err(corrupt(format!("tensor '{name}' is listed in the index but not in {file}")));
            }
        }
    }
    Ok(out)
}

/// One weight file or an index of shards.
enum Layout {
    Single(PathBuf),
    Sharded { index: PathBuf, map: BTreeMap<String, String> },
}

fn checkpoint_layout(dir: &Path) -> Result<Layout, LoadError> {
    for (single, index) in
        [("model.safetensors", "model.safetensors.index.json"), ("pytorch_model.bin", "pytorch_model.bin.index.json")]
    {
        if dir.join(single).is_file() {
            return Ok(Layout::Single(dir.join(single)));
        }
        let index = dir.join(index);
        if index.is_file() {
            let text = read_to_string(&index)?;
            let parsed: ShardIndex =
                serde_json::from_str(&text).map_err(|source| LoadError::Json { path: index.clone(), source })?;
            return Ok(Layout::Sharded { index, map: parsed.weight_map });
        }
    }
    Err(LoadError::NoWeights { dir: dir.to_path_buf() })
}

/// The weight files of a model folder, in load order.
pub fn weight_files(dir: &Path) -> Result<Vec<PathBuf>, LoadError> {
    Ok(match checkpoint_layout(dir)? {
        Layout::Single(file) => vec![file],
        Layout::Sharded { map, .. } => {
            let mut files: Vec<String> = map.into_values().collect();
            files.sort();
            files.dedup();
            files.into_iter().map(|f| dir.join(f)).collect()
        }
    })
}

#[derive(serde::Deserialize)]
struct ShardIndex {
    weight_map: BTreeMap<String, String>,
}

pub(crate) fn read_to_string(path: &Path) -> Result<String, LoadError> {
    std::fs::read_to_string(path).map_err(|source| LoadError::Io { path: path.to_path_buf(), source })
}

fn read_file(file: &Path) -> Result<Checkpoint, LoadError> {
    if file.extension().is_some_and(|e| e == "safetensors") {
        read_safetensors(file)
    } else {
        read_pytorch(file)
    }
}

fn read_safetensors(path: &Path) -> Result<Checkpoint, LoadError> {
    let bytes = std::fs::read(path).map_err(|source| LoadError::Io { path: path.to_path_buf(), source })?;
    let st = SafeTensors::deserialize(&bytes)
        .map_err(|e| LoadError::CorruptWeights { path: path.to_path_buf(), reason: e.to_string() })?;
    let mut out = Checkpoint::default();
    for (name, view) in st.tensors() {
        let raw = view.data();
        let data: Vec<f32> = match view.dtype() {
            Dtype::F32 => raw.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
            Dtype::F16 => raw.chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
            Dtype::BF16 => raw.chunks_exact(2).map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
            Dtype::F64 => raw
                .chunks_exact(8)
                .map(|b| f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32)
                .collect(),
            other => {
                out.others.insert(name, (view.shape().to_vec(), format!("{other:?}")));
                continue;
            }
        };
        out.floats.insert(name, RawTensor { shape: view.shape().to_vec(), data });
    }
    Ok(out)
}

/// A PyTorch zip checkpoint (`torch.save` since 1.6), through candle-core's reader, which
/// fails on a storage that is missing or shorter than its tensors need (burn-store's pads it
/// with zeros and loads a damaged file silently).
fn read_pytorch(path: &Path) -> Result<Checkpoint, LoadError> {
    use candle_core::DType;
    let corrupt = |reason: String| LoadError::CorruptWeights { path: path.to_path_buf(), reason };
    let pth = candle_core::pickle::PthTensors::new(path, None).map_err(|e| corrupt(e.to_string()))?;
    let mut names: Vec<String> = pth.tensor_infos().keys().cloned().collect();
    names.sort();
    let mut out = Checkpoint::default();
    for name in names {
        let info = &pth.tensor_infos()[&name];
        let shape = info.layout.dims().to_vec();
        match info.dtype {
            DType::F32 | DType::F16 | DType::BF16 | DType::F64 => {
                let data = pth
                    .get(&name)
                    .and_then(|t| t.ok_or_else(|| candle_core::Error::Msg("no data".into())))
                    .and_then(|t| t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>())
                    .map_err(|e| corrupt(format!("tensor '{name}': {e}")))?;
                out.floats.insert(name, RawTensor { shape, data });
            }
            other => {
                out.others.insert(name, (shape, format!("{other:?}")));
            }
        }
    }
    Ok(out)
}
