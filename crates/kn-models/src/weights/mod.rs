//! Reading Hugging Face checkpoints (safetensors and PyTorch `.bin`, sharded or not) into a
//! name → tensor map that the architecture loaders consume, with every tensor accounted for.

mod files;

use std::collections::HashMap;
use std::path::Path;

use burn::tensor::{backend::Backend, Tensor, TensorData};

use crate::error::LoadError;
pub(crate) use files::read_to_string;
pub use files::weight_files;

/// A checkpoint tensor on the host, converted to f32.
#[derive(Debug, Clone, PartialEq)]
pub struct RawTensor {
    /// Row-major shape.
    pub shape: Vec<usize>,
    /// Values, row-major.
    pub data: Vec<f32>,
}

impl RawTensor {
    /// Transposes a 2-D tensor (`[out, in]` ↔ `[in, out]`).
    ///
    /// # Shapes
    /// - `self`: `[r, c]`; output: `[c, r]`
    pub fn transpose(self) -> Self {
        self.transposed()
    }

    /// [`RawTensor::transpose`] without consuming `self`.
    ///
    /// # Shapes
    /// - `self`: `[r, c]`; output: `[c, r]`
    pub fn transposed(&self) -> Self {
        let (r, c) = (self.shape[0], self.shape[1]);
        Self { shape: vec![c, r], data: transpose_slice(&self.data, r, c) }
    }

    /// Columns `from..to` of a 2-D tensor.
    ///
    /// # Shapes
    /// - `self`: `[r, c]`; output: `[r, to - from]`
    pub fn columns(&self, from: usize, to: usize) -> Self {
        let (r, c) = (self.shape[0], self.shape[1]);
        let mut data = Vec::with_capacity(r * (to - from));
        for i in 0..r {
            data.extend_from_slice(&self.data[i * c + from..i * c + to]);
        }
        Self { shape: vec![r, to - from], data }
    }

    /// Elements `from..to` of a 1-D tensor.
    pub fn range(&self, from: usize, to: usize) -> Self {
        Self { shape: vec![to - from], data: self.data[from..to].to_vec() }
    }

    /// Moves the values to a burn tensor on `device`.
    pub fn into_tensor<B: Backend, const D: usize>(self, device: &B::Device) -> Tensor<B, D> {
        Tensor::from_data(TensorData::new(self.data, self.shape), device)
    }
}

/// `src` (`[r, c]`, row-major) transposed, in 32 × 32 tiles (a row-by-row walk would miss the
/// cache on every write), blocks of output rows split over rayon's pool.
///
/// # Shapes
/// - `src`: `[r, c]`; output: `[c, r]`
pub(crate) fn transpose_slice(src: &[f32], r: usize, c: usize) -> Vec<f32> {
    // Nothing tallied: this also turns products' column-major outputs row-major, mid-IG.
    transpose_with(r, c, |k| src[k], |_| 0).0
}

/// The `[c, r]` transpose of the `[r, c]` row-major values `get(i·c + j)`, in 32 × 32 tiles
/// (a row-by-row walk would miss the cache on every write), blocks of output rows split over
/// rayon's pool. Reading through `get` lets a loader decode a file's bytes and transpose them
/// in one pass, which also sums `tally` over the values (the second result: the loader counts
/// the values that are not finite, so that its NaN/inf check reads nothing again).
///
/// # Shapes
/// - output: `[c, r]`, row-major
///
/// The output is allocated uninitialised and written once: a zeroed allocation (`calloc`)
/// would have the allocator clear reused heap memory on the calling thread first, one more
/// pass over the whole tensor before the parallel one (with [`crate::host_memory`]'s settings,
/// most of a cold load's time went there).
#[allow(unsafe_code)]
pub(crate) fn transpose_with(
    r: usize,
    c: usize,
    get: impl Fn(usize) -> f32 + Sync,
    tally: impl Fn(f32) -> usize + Sync,
) -> (Vec<f32>, usize) {
    use rayon::prelude::*;
    const TILE: usize = 32;
    let n = r * c;
    let mut dst: Vec<f32> = Vec::with_capacity(n);
    let mut total = 0;
    if n > 0 {
        // Each work item fills TILE output rows (TILE input columns) completely, tile by tile.
        total = dst.spare_capacity_mut()[..n]
            .par_chunks_mut(TILE * r)
            .enumerate()
            .map(|(k, block)| {
                let j0 = k * TILE;
                let rows = block.len() / r;
                let mut sum = 0;
                for i0 in (0..r).step_by(TILE) {
                    let i1 = (i0 + TILE).min(r);
                    for j in 0..rows {
                        let out = &mut block[j * r + i0..j * r + i1];
                        for (o, i) in out.iter_mut().zip(i0..i1) {
                            let v = get(i * c + j0 + j);
                            sum += tally(v);
                            o.write(v);
                        }
                    }
                }
                sum
            })
            .sum();
    }
    // SAFETY: the capacity is at least `n` and every one of the first `n` slots was written
    // above: the chunks of `TILE·r` slots tile them, and chunk `k` (`rows` whole output rows of
    // `r` slots, since `TILE·r` divides every chunk but the last, which holds `n - k·TILE·r`,
    // a multiple of `r`) has each of its rows `j` written over `i0..i1` for tiles `i0` covering
    // `0..r`. `get` or `tally` panicking would unwind out of the parallel loop before this line.
    unsafe { dst.set_len(n) };
    (dst, total)
}

/// Known buffers that checkpoints carry and no model here needs (causal-mask buffers,
/// position-id buffers, BERT's pooler and next-sentence head).
const KNOWN_UNUSED: &[&str] = &[
    ".attn.bias",
    ".attn.masked_bias",
    ".attention.bias",
    ".attention.masked_bias",
    "position_ids",
    ".rotary_emb.inv_freq",
    "pooler.dense.weight",
    "pooler.dense.bias",
    "cls.seq_relationship.weight",
    "cls.seq_relationship.bias",
];

/// All tensors of a checkpoint, consumed by name as the model is built.
///
/// [`WeightMap::take`] removes a tensor after checking its shape; [`WeightMap::finish`] fails on
/// anything left that is neither a known buffer nor under an ignored prefix, so no checkpoint
/// tensor is silently dropped.
#[derive(Debug)]
pub struct WeightMap {
    tensors: HashMap<String, files::Stored>,
    /// Integer and bool tensors (buffers): name → (shape, dtype). Taking one as a weight is an
    /// error naming its dtype.
    others: HashMap<String, (Vec<usize>, String)>,
    ignore_prefixes: Vec<String>,
    /// When set, `take` invents deterministic random tensors instead of reading them, and
    /// records what it handed out (random checkpoints of real shapes, for benchmarks).
    synthetic: Option<Synthetic>,
}

/// State of a synthetic weight map.
#[derive(Debug)]
struct Synthetic {
    rng: kn_core::planted::Lcg,
    std: f32,
    handed_out: Vec<(String, RawTensor)>,
}

impl Synthetic {
    fn make(&mut self, name: &str, shape: &[usize]) -> RawTensor {
        let n: usize = shape.iter().product();
        let norm_gain = shape.len() == 1
            && (name.to_ascii_lowercase().ends_with("norm.weight")
                || name.contains(".ln_")
                || name.ends_with("ln_f.weight"));
        let data: Vec<f32> = if norm_gain {
            (0..n).map(|_| 1.0 + 0.1 * self.rng.normal()).collect()
        } else {
            let std = self.std;
            (0..n).map(|_| std * self.rng.normal()).collect()
        };
        let t = RawTensor { shape: shape.to_vec(), data };
        self.handed_out.push((name.to_string(), t.clone()));
        t
    }
}

impl WeightMap {
    /// Reads the weights in `dir`: `model.safetensors`, `pytorch_model.bin`, or the shards named
    /// by `model.safetensors.index.json` / `pytorch_model.bin.index.json`. Safetensors win when
    /// both are present.
    ///
    /// A sharded checkpoint must agree with its index (each tensor in the shard the index names,
    /// in one shard only); a `.bin` storage shorter than its tensors is an error.
    pub fn from_dir(dir: &Path) -> Result<Self, LoadError> {
        let c = files::read_checkpoint(dir)?;
        Ok(Self { tensors: c.floats, others: c.others, ignore_prefixes: Vec::new(), synthetic: None })
    }

    /// A map over tensors already in memory (tests).
    pub fn from_tensors(tensors: HashMap<String, RawTensor>) -> Self {
        let tensors = tensors.into_iter().map(|(k, t)| (k, files::Stored::Host(t))).collect();
        Self { tensors, others: HashMap::new(), ignore_prefixes: Vec::new(), synthetic: None }
    }

    /// A map that invents every tensor asked for: N(0, `std`) values from `seed`, norm gains
    /// near 1. [`WeightMap::handed_out`] then lists what the model took, for saving.
    pub fn synthetic(seed: u64, std: f32) -> Self {
        Self {
            tensors: HashMap::new(),
            others: HashMap::new(),
            ignore_prefixes: Vec::new(),
            synthetic: Some(Synthetic {
                rng: kn_core::planted::Lcg(seed ^ 0x9e37_79b9_7f4a_7c15),
                std,
                handed_out: Vec::new(),
            }),
        }
    }

    /// The tensors a synthetic map handed out, in order (empty for a real checkpoint).
    pub fn handed_out(self) -> Vec<(String, RawTensor)> {
        self.synthetic.map(|s| s.handed_out).unwrap_or_default()
    }

    /// Tensors whose name starts with one of `prefixes` are allowed to stay unused.
    pub fn ignore_prefixes(mut self, prefixes: &[String]) -> Self {
        self.ignore_prefixes.extend(prefixes.iter().cloned());
        self
    }

    /// Whether a tensor of that name is (still) in the map.
    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name) || self.others.contains_key(name)
    }

    /// Whether this map invents its tensors (random models) instead of reading a checkpoint.
    pub fn is_synthetic(&self) -> bool {
        self.synthetic.is_some()
    }

    /// Names still in the map.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().chain(self.others.keys()).map(String::as_str)
    }

    /// Removes tensor `name` and checks that it has shape `expected` and only finite values.
    pub fn take(&mut self, name: &str, expected: &[usize]) -> Result<RawTensor, LoadError> {
        self.take_as(name, expected, false)
    }

    /// [`WeightMap::take`] of a 2-D tensor `expected` = `[r, c]`, returned transposed
    /// (`[c, r]`): a mapped file's bytes are converted straight into the transposed layout.
    pub fn take_transposed(&mut self, name: &str, expected: &[usize]) -> Result<RawTensor, LoadError> {
        self.take_as(name, expected, expected.len() == 2)
    }

    fn take_as(&mut self, name: &str, expected: &[usize], transpose: bool) -> Result<RawTensor, LoadError> {
        if let Some(s) = &mut self.synthetic {
            let t = s.make(name, expected);
            return Ok(if transpose { t.transposed() } else { t });
        }
        if let Some((_, dtype)) = self.others.remove(name) {
            return Err(LoadError::UnsupportedDtype { name: name.to_string(), dtype });
        }
        let stored = self.tensors.remove(name).ok_or_else(|| LoadError::MissingTensor { name: name.to_string() })?;
        if stored.shape() != expected {
            return Err(LoadError::ShapeMismatch {
                name: name.to_string(),
                expected: expected.to_vec(),
                got: stored.shape().to_vec(),
            });
        }
        let (t, count) = match stored {
            files::Stored::Host(t) => {
                let count = files::count_non_finite(&t.data);
                (if transpose { t.transposed() } else { t }, count)
            }
            files::Stored::Mapped(m) => m.take(transpose),
        };
        if count > 0 {
            return Err(LoadError::NonFinite { name: name.to_string(), count });
        }
        Ok(t)
    }

    /// Like [`WeightMap::take`], but `None` when the tensor is absent.
    pub fn take_opt(&mut self, name: &str, expected: &[usize]) -> Result<Option<RawTensor>, LoadError> {
        if self.contains(name) {
            self.take(name, expected).map(Some)
        } else {
            Ok(None)
        }
    }

    /// Removes a tensor without using it (a duplicate of a tied weight, say).
    pub fn discard(&mut self, name: &str) {
        self.tensors.remove(name);
        self.others.remove(name);
    }

    /// Fails with [`LoadError::UnexpectedTensors`] if anything but known buffers or ignored
    /// prefixes is left.
    pub fn finish(self) -> Result<(), LoadError> {
        let mut names: Vec<String> = self
            .tensors
            .into_keys()
            .chain(self.others.into_keys())
            .filter(|n| !KNOWN_UNUSED.iter().any(|k| n.ends_with(k)))
            .filter(|n| !self.ignore_prefixes.iter().any(|p| n.starts_with(p.as_str())))
            .collect();
        if names.is_empty() {
            return Ok(());
        }
        names.sort();
        Err(LoadError::UnexpectedTensors { names })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(shape: &[usize]) -> RawTensor {
        let n = shape.iter().product();
        RawTensor { shape: shape.to_vec(), data: (0..n).map(|i| i as f32).collect() }
    }

    #[test]
    fn transpose_swaps_rows_and_columns() {
        let t = raw(&[2, 3]).transpose();
        assert_eq!(t.shape, vec![3, 2]);
        assert_eq!(t.data, vec![0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
        // Across tile edges and with ragged tiles.
        let (r, c) = (70, 45);
        let t = raw(&[r, c]).transpose();
        assert_eq!(t.shape, vec![c, r]);
        for i in 0..r {
            for j in 0..c {
                assert_eq!(t.data[j * r + i], (i * c + j) as f32);
            }
        }
    }

    #[test]
    fn columns_split_a_fused_matrix() {
        let t = raw(&[2, 6]).columns(2, 4);
        assert_eq!(t.data, vec![2.0, 3.0, 8.0, 9.0]);
    }

    #[test]
    fn take_checks_shapes_and_finish_reports_leftovers() {
        let mut m = WeightMap::from_tensors(HashMap::from([
            ("a".to_string(), raw(&[2, 2])),
            ("h.0.attn.bias".to_string(), raw(&[1])),
            ("cls.species.weight".to_string(), raw(&[3])),
        ]));
        assert!(matches!(m.take("a", &[4]), Err(LoadError::ShapeMismatch { .. })));
        assert!(matches!(m.take("b", &[4]), Err(LoadError::MissingTensor { .. })));
        match m.finish() {
            Err(LoadError::UnexpectedTensors { names }) => {
                assert_eq!(names, vec!["cls.species.weight"])
            }
            other => panic!("expected UnexpectedTensors, got {other:?}"),
        }
    }

    #[test]
    fn ignored_prefixes_are_allowed_to_stay() {
        let m = WeightMap::from_tensors(HashMap::from([("cls.species.weight".to_string(), raw(&[3]))]))
            .ignore_prefixes(&["cls.species.".to_string()]);
        assert!(m.finish().is_ok());
    }

    #[test]
    fn a_mapped_checkpoint_decodes_transposes_and_counts_non_finite_values_in_one_pass() {
        // [70, 45]: ragged 32 x 32 tiles; a NaN, +inf and -inf in one tensor, F32 and BF16.
        let (r, c) = (70, 45);
        let value = |i: usize| ((i % 251) as f32 - 125.0) * 0.25;
        let mut vals: Vec<f32> = (0..r * c).map(value).collect();
        let bad = [(3, f32::NAN), (r * c / 2, f32::INFINITY), (r * c - 1, f32::NEG_INFINITY)];
        let f32_bytes = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        let bf16_bytes = |v: &[f32]| v.iter().flat_map(|&x| half::bf16::from_f32(x).to_le_bytes()).collect::<Vec<u8>>();
        let good = (f32_bytes(&vals), bf16_bytes(&vals));
        for (k, v) in bad {
            vals[k] = v;
        }
        let damaged = (f32_bytes(&vals), bf16_bytes(&vals));
        let dir = tempfile::tempdir().unwrap();
        let views = [
            ("good.f32", safetensors::Dtype::F32, &good.0),
            ("good.bf16", safetensors::Dtype::BF16, &good.1),
            ("bad.f32", safetensors::Dtype::F32, &damaged.0),
            ("bad.bf16", safetensors::Dtype::BF16, &damaged.1),
        ]
        .map(|(n, d, b)| (n.to_string(), safetensors::tensor::TensorView::new(d, vec![r, c], b).unwrap()));
        safetensors::serialize_to_file(views, None, &dir.path().join("model.safetensors")).unwrap();
        let expected: Vec<f32> = (0..r * c).map(value).collect();
        let expected_t = RawTensor { shape: vec![r, c], data: expected.clone() }.transpose();
        for transpose in [false, true] {
            let mut m = WeightMap::from_dir(dir.path()).unwrap();
            for name in ["good.f32", "good.bf16"] {
                let t = m.take_as(name, &[r, c], transpose).unwrap();
                // Every value is exact in bf16 (quarters of at most 125: 7 significant bits).
                let want =
                    if transpose { &expected_t } else { &RawTensor { shape: vec![r, c], data: expected.clone() } };
                assert_eq!((&t.shape, &t.data), (&want.shape, &want.data), "{name}, transpose {transpose}");
            }
            for name in ["bad.f32", "bad.bf16"] {
                match m.take_as(name, &[r, c], transpose) {
                    Err(LoadError::NonFinite { name: n, count: 3 }) => assert_eq!(n, name),
                    other => panic!("{name}, transpose {transpose}: expected 3 non-finite values, got {other:?}"),
                }
            }
        }
    }

    #[test]
    fn non_finite_weights_are_rejected() {
        let mut t = raw(&[2]);
        t.data[1] = f32::NAN;
        let mut m = WeightMap::from_tensors(HashMap::from([("w".to_string(), t)]));
        assert!(matches!(m.take("w", &[2]), Err(LoadError::NonFinite { count: 1, .. })));
    }
}
