//! A corruption loop over a small checkpoint of every format (safetensors, PyTorch `.bin`,
//! sharded safetensors, GGUF): seeded truncations, deletions, byte flips and header edits.
//! Not one may panic; every truncation and deletion must be an error (a flip may leave a valid
//! file with other weights, which no loader can tell).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use crate::common::*;
use kn_models::{load_model, LoadOptions};

/// A tiny deterministic generator (SplitMix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Truncate,
    Delete,
    Flip,
    Header,
}

/// `bytes` damaged in one of four ways; `header` is the length of the file's header region.
fn damage(bytes: &[u8], kind: Kind, header: usize, rng: &mut Rng) -> Vec<u8> {
    let n = bytes.len();
    match kind {
        Kind::Truncate => bytes[..rng.below(n)].to_vec(),
        Kind::Delete => {
            let at = rng.below(n);
            let len = 1 + rng.below((n - at).min(4096));
            [&bytes[..at], &bytes[at + len..]].concat()
        }
        Kind::Flip => {
            let mut b = bytes.to_vec();
            for _ in 0..1 + rng.below(8) {
                let i = rng.below(n);
                b[i] ^= 1 << rng.below(8);
            }
            b
        }
        Kind::Header => {
            let mut b = bytes.to_vec();
            for _ in 0..1 + rng.below(4) {
                let i = rng.below(header.min(n));
                b[i] = (rng.next() & 0xff) as u8;
            }
            b
        }
    }
}

/// A GGUF file of the tiny Llama's shapes (random weights), written with candle-core.
fn tiny_gguf(dir: &Path) -> PathBuf {
    use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
    use gguf_file::Value::*;
    let d = 32usize;
    let t = |shape: &[usize]| {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|i| (i as f32 * 0.1).sin() * 0.1).collect();
        QTensor::quantize(&candle_core::Tensor::from_vec(v, shape, &candle_core::Device::Cpu).unwrap(), GgmlDType::Q8_0)
            .unwrap()
    };
    let mut tensors = vec![("token_embd.weight".to_string(), t(&[64, d])), ("output_norm.weight".into(), t(&[d]))];
    for (name, shape) in crate::gguf_files::block_shapes(d, 64) {
        tensors.push((format!("blk.0.{name}.weight"), t(&shape)));
    }
    let meta: Vec<(&str, gguf_file::Value)> = vec![
        ("general.architecture", String("llama".into())),
        ("llama.block_count", U32(1)),
        ("llama.context_length", U32(16)),
        ("llama.embedding_length", U32(d as u32)),
        ("llama.feed_forward_length", U32(64)),
        ("llama.attention.head_count", U32(2)),
        ("llama.attention.layer_norm_rms_epsilon", F32(1e-5)),
        ("tokenizer.ggml.model", String("gpt2".into())),
        ("tokenizer.ggml.tokens", Array((0..64).map(|i| String(format!("t{i}"))).collect())),
        ("tokenizer.ggml.merges", Array(vec![String("t1 t2".into())])),
    ];
    let path = dir.join("tiny.gguf");
    let mut f = std::fs::File::create(&path).unwrap();
    let m: Vec<(&str, &gguf_file::Value)> = meta.iter().map(|(k, v)| (*k, v)).collect();
    let ts: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    gguf_file::write(&mut f, &m, &ts).unwrap();
    path
}

/// The header length of a file (safetensors: 8 + the JSON; others: the first KiB).
fn header_len(path: &Path, bytes: &[u8]) -> usize {
    if path.extension().is_some_and(|e| e == "safetensors") {
        8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize
    } else {
        1024.min(bytes.len())
    }
}

#[test]
fn a_thousand_corrupted_checkpoints_give_errors_never_panics() {
    let tmp = tempfile::tempdir().unwrap();
    let gguf = tiny_gguf(tmp.path());
    // (model folder or file, the file to damage inside it)
    let cases: Vec<(PathBuf, PathBuf)> = vec![
        (fixture("tiny-bert"), fixture("tiny-bert").join("model.safetensors")),
        (fixture("tiny-gpt2"), fixture("tiny-gpt2").join("pytorch_model.bin")),
        (fixture("tiny-gpt-neo"), fixture("tiny-gpt-neo").join("model-00002-of-00005.safetensors")),
        (fixture("tiny-gpt-neo"), fixture("tiny-gpt-neo").join("model.safetensors.index.json")),
        (gguf.clone(), gguf.clone()),
    ];
    let kinds = [Kind::Truncate, Kind::Delete, Kind::Flip, Kind::Header];
    let mut rng = Rng(20261201);
    let (mut panics, mut silent, mut total) = (Vec::new(), Vec::new(), 0usize);
    let mut errors = 0usize;
    for round in 0..50 {
        for (model, file) in &cases {
            for kind in kinds {
                total += 1;
                // A fresh copy of the model with the one file damaged.
                let work = tmp.path().join(format!("w{total}"));
                let target = if model.is_dir() {
                    std::fs::create_dir_all(&work).unwrap();
                    for e in std::fs::read_dir(model).unwrap() {
                        let e = e.unwrap();
                        std::fs::copy(e.path(), work.join(e.file_name())).unwrap();
                    }
                    work.clone()
                } else {
                    std::fs::create_dir_all(&work).unwrap();
                    work.join(model.file_name().unwrap())
                };
                let damaged_file = if model.is_dir() { work.join(file.file_name().unwrap()) } else { target.clone() };
                let bytes = std::fs::read(file).unwrap();
                let header = header_len(file, &bytes);
                std::fs::write(&damaged_file, damage(&bytes, kind, header, &mut rng)).unwrap();
                let name = target.to_str().unwrap().to_string();
                let result = catch_unwind(AssertUnwindSafe(|| {
                    load_model::<B>(&name, &LoadOptions::default(), &Default::default()).map(|_| ())
                }));
                match result {
                    Err(_) => panics.push(format!("round {round}: {kind:?} of {}", file.display())),
                    Ok(Ok(())) if matches!(kind, Kind::Truncate | Kind::Delete) => {
                        silent.push(format!("round {round}: {kind:?} of {} loaded", file.display()))
                    }
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => errors += 1,
                }
                let _ = std::fs::remove_dir_all(&work);
            }
        }
    }
    eprintln!(
        "corruption loop: {total} damaged checkpoints, {errors} typed errors, {} panics, {} silent truncations/deletions",
        panics.len(),
        silent.len()
    );
    assert!(total >= 1000, "{total} cases");
    assert!(panics.is_empty(), "panics: {panics:#?}");
    assert!(silent.is_empty(), "loaded although truncated or cut: {silent:#?}");
}
