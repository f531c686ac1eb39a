//! Reading checkpoint files: safetensors and PyTorch `.bin` (zip), sharded or not, with every
//! byte a tensor needs accounted for and the shard index followed.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use safetensors::{tensor::Dtype, SafeTensors};

use super::RawTensor;
use crate::error::LoadError;

/// The tensors of a checkpoint: float tensors converted to f32, and the names, shapes and
/// dtypes of the others (integer and bool buffers), which no weight may be.
#[derive(Debug, Default)]
pub(crate) struct Checkpoint {
    /// Float tensors.
    pub floats: HashMap<String, Stored>,
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

/// Indexes a safetensors file through a read-only memory map (no buffer of the whole file):
/// its float tensors are converted to f32 only when taken ([`Mapped::take`]), transposed in
/// the same pass where the model wants them transposed, their non-finite values counted there.
fn read_safetensors(path: &Path) -> Result<Checkpoint, LoadError> {
    let io = |source| LoadError::Io { path: path.to_path_buf(), source };
    let file = std::fs::File::open(path).map_err(io)?;
    let map = Arc::new(map_file(&file).map_err(io)?);
    let st = SafeTensors::deserialize(&map[..])
        .map_err(|e| LoadError::CorruptWeights { path: path.to_path_buf(), reason: e.to_string() })?;
    let base = map.as_ptr() as usize;
    let mut out = Checkpoint::default();
    for (name, view) in st.tensors() {
        let shape = view.shape().to_vec();
        let width = match view.dtype() {
            Dtype::F32 => 4,
            Dtype::F16 | Dtype::BF16 => 2,
            Dtype::F64 => 8,
            other => {
                out.others.insert(name, (shape, format!("{other:?}")));
                continue;
            }
        };
        // `data()` is a slice of the map: its offset locates the tensor in the file.
        let start = view.data().as_ptr() as usize - base;
        let bytes = start..start + view.data().len();
        debug_assert_eq!(bytes.len(), shape.iter().product::<usize>() * width);
        out.floats.insert(name, Stored::Mapped(Mapped { map: Arc::clone(&map), dtype: view.dtype(), shape, bytes }));
    }
    Ok(out)
}

/// A float tensor of a checkpoint: converted already (PyTorch files, GGUF, tests) or still
/// bytes in a mapped safetensors file.
#[derive(Debug)]
pub(crate) enum Stored {
    /// Values in memory.
    Host(RawTensor),
    /// Bytes in a mapped file.
    Mapped(Mapped),
}

impl Stored {
    /// The row-major shape.
    pub fn shape(&self) -> &[usize] {
        match self {
            Self::Host(t) => &t.shape,
            Self::Mapped(m) => &m.shape,
        }
    }
}

/// A tensor's bytes in a mapped safetensors file (validated by `safetensors`: the range holds
/// exactly `shape`'s elements of `dtype`).
#[derive(Debug)]
pub(crate) struct Mapped {
    map: Arc<memmap2::Mmap>,
    dtype: Dtype,
    shape: Vec<usize>,
    bytes: std::ops::Range<usize>,
}

impl Mapped {
    /// The values as f32 (transposed, for a 2-D tensor, when `transpose`) and how many of them
    /// are not finite.
    ///
    /// # Shapes
    /// - output: `shape`, or `[c, r]` for a transposed `[r, c]`
    pub fn take(&self, transpose: bool) -> (RawTensor, usize) {
        let raw = &self.map[self.bytes.clone()];
        let transposed = match self.shape[..] {
            [r, c] if transpose => Some((r, c)),
            _ => None,
        };
        let (data, non_finite) = match self.dtype {
            Dtype::F32 => decode(raw, transposed, f32::from_le_bytes),
            Dtype::F16 => decode(raw, transposed, |b| half::f16::from_le_bytes(b).to_f32()),
            Dtype::BF16 => decode(raw, transposed, |b| half::bf16::from_le_bytes(b).to_f32()),
            _ => decode(raw, transposed, |b| f64::from_le_bytes(b) as f32),
        };
        release(&self.map, self.bytes.clone());
        let shape = match transposed {
            Some((r, c)) => vec![c, r],
            None => self.shape.clone(),
        };
        (RawTensor { shape, data }, non_finite)
    }
}

/// Little-endian values of `N` bytes decoded to f32, row-major as stored, or for
/// `transposed = Some((r, c))` the `[c, r]` transpose of the `[r, c]` values, and how many are
/// not finite, in one pass.
fn decode<const N: usize>(
    raw: &[u8],
    transposed: Option<(usize, usize)>,
    dec: impl Fn([u8; N]) -> f32 + Sync,
) -> (Vec<f32>, usize) {
    match transposed {
        Some((r, c)) => super::transpose_with(r, c, |k| dec(at(raw, k)), not_finite),
        None => convert(raw, dec),
    }
}

/// Element `k` of `N`-byte values.
#[inline(always)]
fn at<const N: usize>(raw: &[u8], k: usize) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(&raw[k * N..k * N + N]);
    a
}

/// Maps `file` read-only.
#[allow(unsafe_code)]
fn map_file(file: &std::fs::File) -> std::io::Result<memmap2::Mmap> {
    // SAFETY: the map is read-only and lives only while this module converts its bytes into
    // owned f32 vectors. The one hazard of any file map, another process truncating or
    // rewriting the file during those milliseconds, is the same one `safetensors` and
    // `candle` accept for their mapped loads; a checkpoint being written while it is loaded
    // is not a supported use.
    unsafe { memmap2::Mmap::map(file) }
}

/// Drops the pages of `bytes` from this process's resident set once they are converted (they
/// stay in the page cache), so that a load never holds the whole file and every converted
/// tensor at once. Best effort: a failure only leaves the pages mapped until the map goes.
#[allow(unsafe_code)]
fn release(map: &memmap2::Mmap, bytes: std::ops::Range<usize>) {
    #[cfg(unix)]
    // SAFETY: the map is read-only and private to this module, no reference into the range
    // outlives the conversion that just finished, and for a read-only file mapping
    // MADV_DONTNEED only unmaps pages: a later read of the range (a neighbouring tensor sharing
    // its first or last page) faults them in again from the file, unchanged.
    unsafe {
        let _ = map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, bytes.start, bytes.len());
    }
    #[cfg(not(unix))]
    let _ = (map, bytes);
}

/// Decodes little-endian values of `N` bytes into f32, in parallel chunks, each value written
/// once into an uninitialised vector (a zeroed one can cost a clearing pass on one thread
/// first: see [`super::transpose_with`]), and counts those that are not finite on the way.
#[allow(unsafe_code)]
fn convert<const N: usize>(raw: &[u8], dec: impl Fn([u8; N]) -> f32 + Sync) -> (Vec<f32>, usize) {
    use rayon::prelude::*;
    const CHUNK: usize = 1 << 16;
    let n = raw.len() / N;
    let mut data: Vec<f32> = Vec::with_capacity(n);
    let non_finite = data.spare_capacity_mut()[..n]
        .par_chunks_mut(CHUNK)
        .zip(raw.par_chunks(CHUNK * N))
        .map(|(out, bytes)| {
            let mut bad = 0;
            for (o, b) in out.iter_mut().zip(bytes.chunks_exact(N)) {
                let v = dec(at(b, 0));
                bad += not_finite(v);
                o.write(v);
            }
            bad
        })
        .sum();
    // SAFETY: the capacity is at least `n`, and every one of the first `n` slots was written:
    // output chunk `k` holds slots `k·CHUNK..` and byte chunk `k` the `N`-byte values of those
    // same slots (`raw` holds at least `n·N` bytes), so the zip pairs each slot with its value.
    unsafe { data.set_len(n) };
    (data, non_finite)
}

/// How many values are NaN or infinite (branch-free, in parallel chunks).
pub(crate) fn count_non_finite(data: &[f32]) -> usize {
    use rayon::prelude::*;
    data.par_chunks(1 << 16).map(|c| c.iter().map(|&v| not_finite(v)).sum::<usize>()).sum()
}

/// 1 if `v` is NaN or infinite (all exponent bits set), else 0; branch-free.
#[inline(always)]
fn not_finite(v: f32) -> usize {
    usize::from(v.to_bits() & 0x7f80_0000 == 0x7f80_0000)
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
                out.floats.insert(name, Stored::Host(RawTensor { shape, data }));
            }
            other => {
                out.others.insert(name, (shape, format!("{other:?}")));
            }
        }
    }
    Ok(out)
}
