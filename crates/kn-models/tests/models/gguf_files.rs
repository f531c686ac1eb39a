//! GGUF files written here with candle-core's writer, the way llama.cpp's converter lays them
//! out (llama.* metadata, `blk.N.*` names, q/k rows permuted for adjacent-pair RoPE): the tiny
//! Llama fixture loaded from such a file gives transformers' logits, every quantized type loads
//! within its rounding, and what is not supported is refused by name.

use std::collections::HashMap;
use std::path::Path;

use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::{Device, Tensor as CTensor};

use crate::common::*;
use kn_core::ModelInput;
use kn_models::{load_model, LoadError, LoadOptions};

type Meta = Vec<(String, gguf_file::Value)>;

fn write_gguf(path: &Path, meta: &Meta, tensors: &[(String, QTensor)]) {
    let mut f = std::fs::File::create(path).unwrap();
    let m: Vec<(&str, &gguf_file::Value)> = meta.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let t: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    gguf_file::write(&mut f, &m, &t).unwrap();
}

fn qtensor(data: &[f32], shape: &[usize], dtype: GgmlDType) -> QTensor {
    let t = CTensor::from_vec(data.to_vec(), shape, &Device::Cpu).unwrap();
    QTensor::quantize(&t, dtype).unwrap()
}

/// The tensors of a safetensors fixture, as f32.
fn safetensors(dir: &Path) -> HashMap<String, (Vec<usize>, Vec<f32>)> {
    let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(name, v)| {
            assert_eq!(v.dtype(), safetensors::Dtype::BF16, "tiny-llama is stored in bf16");
            let data = v.data().chunks_exact(2).map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect();
            (name, (v.shape().to_vec(), data))
        })
        .collect()
}

/// llama.cpp's `permute`: within each head, row (half, i) goes to row (i, half).
fn permute(data: &[f32], rows: usize, cols: usize, heads: usize) -> Vec<f32> {
    let hd = rows / heads;
    let mut out = vec![0.0; data.len()];
    for h in 0..heads {
        for half in 0..2 {
            for i in 0..hd / 2 {
                let (from, to) = (h * hd + half * (hd / 2) + i, h * hd + 2 * i + half);
                out[to * cols..(to + 1) * cols].copy_from_slice(&data[from * cols..(from + 1) * cols]);
            }
        }
    }
    out
}

/// GGUF names and row-major shapes of one Llama block's tensors (`d` wide, FFN `ff`, one key/value
/// head per query head).
pub fn block_shapes(d: usize, ff: usize) -> [(&'static str, Vec<usize>); 9] {
    [
        ("attn_norm", vec![d]),
        ("ffn_norm", vec![d]),
        ("attn_q", vec![d, d]),
        ("attn_k", vec![d, d]),
        ("attn_v", vec![d, d]),
        ("attn_output", vec![d, d]),
        ("ffn_gate", vec![ff, d]),
        ("ffn_up", vec![ff, d]),
        ("ffn_down", vec![d, ff]),
    ]
}

fn tiny_llama_meta() -> Meta {
    use gguf_file::Value::*;
    let v = |k: &str, x: gguf_file::Value| (k.to_string(), x);
    vec![
        v("general.architecture", String("llama".into())),
        v("llama.block_count", U32(3)),
        v("llama.context_length", U32(64)),
        v("llama.embedding_length", U32(32)),
        v("llama.feed_forward_length", U32(48)),
        v("llama.attention.head_count", U32(4)),
        v("llama.attention.head_count_kv", U32(2)),
        v("llama.attention.key_length", U32(16)),
        v("llama.rope.dimension_count", U32(16)),
        v("llama.rope.freq_base", F32(10_000.0)),
        v("llama.attention.layer_norm_rms_epsilon", F32(1e-5)),
        v("llama.vocab_size", U32(83)),
    ]
}

/// tiny-llama as a llama.cpp GGUF; its llama3 RoPE scaling becomes `rope_freqs.weight`, as
/// llama.cpp writes Llama 3.1's.
fn tiny_llama_tensors() -> Vec<(String, QTensor)> {
    let src = safetensors(&fixture("tiny-llama"));
    let gguf_name = |hf: &str| -> String {
        if hf == "model.embed_tokens.weight" {
            return "token_embd.weight".into();
        }
        if hf == "model.norm.weight" {
            return "output_norm.weight".into();
        }
        let rest = hf.strip_prefix("model.layers.").unwrap();
        let (layer, rest) = rest.split_once('.').unwrap();
        let part = match rest.trim_end_matches(".weight") {
            "input_layernorm" => "attn_norm",
            "post_attention_layernorm" => "ffn_norm",
            "self_attn.q_proj" => "attn_q",
            "self_attn.k_proj" => "attn_k",
            "self_attn.v_proj" => "attn_v",
            "self_attn.o_proj" => "attn_output",
            "mlp.gate_proj" => "ffn_gate",
            "mlp.up_proj" => "ffn_up",
            "mlp.down_proj" => "ffn_down",
            other => panic!("unexpected tensor {other}"),
        };
        format!("blk.{layer}.{part}.weight")
    };
    let mut out: Vec<(String, QTensor)> = src
        .iter()
        .map(|(hf, (shape, data))| {
            let data = if hf.contains("q_proj") {
                permute(data, shape[0], shape[1], 4)
            } else if hf.contains("k_proj") {
                permute(data, shape[0], shape[1], 2)
            } else {
                data.clone()
            };
            (gguf_name(hf), qtensor(&data, shape, GgmlDType::F32))
        })
        .collect();
    // llama3 scaling (factor 4, low 1, high 4, original 16) as per-pair divisors of θ^(-2i/16).
    let factors: Vec<f32> = (0..8)
        .map(|i| {
            let f = 1.0 / 10_000f64.powf(2.0 * i as f64 / 16.0);
            let wavelen = 2.0 * std::f64::consts::PI / f;
            if wavelen < 16.0 / 4.0 {
                1.0
            } else if wavelen > 16.0 {
                4.0
            } else {
                let smooth = (16.0 / wavelen - 1.0) / (4.0 - 1.0);
                (1.0 / ((1.0 - smooth) / 4.0 + smooth)) as f32
            }
        })
        .collect();
    out.push(("rope_freqs.weight".into(), qtensor(&factors, &[8], GgmlDType::F32)));
    out
}

#[test]
fn tiny_llama_from_a_llama_cpp_gguf_matches_transformers() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("tiny-llama.gguf");
    write_gguf(&path, &tiny_llama_meta(), &tiny_llama_tensors());
    let bundle = load_model::<B>(path.to_str().unwrap(), &LoadOptions::default(), &Default::default()).unwrap();
    assert!(bundle.tokenizer.is_none(), "no tokenizer metadata, no tokenizer");
    assert!(bundle.config.tie_word_embeddings, "no output.weight: tied");
    let gold = golden("tiny-llama.json");
    let input = ModelInput::<B>::from_batch(&id_rows(&gold["input_ids"]), 0, &Default::default());
    let diff = max_abs_diff(&values(kn_core::KnowledgeModel::forward(&bundle.model, &input)), &floats(&gold["logits"]));
    within("tiny-llama from GGUF (permuted q/k, rope_freqs): max |logits - transformers|", diff, TOL.logits_abs);
    // The folder holding the one GGUF file loads it too.
    let again = load_model::<B>(tmp.path().to_str().unwrap(), &LoadOptions::default(), &Default::default()).unwrap();
    assert_eq!(again.config, bundle.config);
}

#[test]
fn every_quantized_type_loads_within_its_rounding() {
    // A [4, 512] matrix (K-quants need rows of 256) as the token embedding of a tiny model
    // whose other tensors are f32, for each type; the embedding row read back must be the
    // original within the type's precision.
    let (rows, cols) = (4, 512);
    let emb: Vec<f32> = (0..rows * cols).map(|i| (i as f32 * 0.731).sin() * 0.5).collect();
    let cases = [
        (GgmlDType::F32, 0.0),
        (GgmlDType::F16, 1e-3),
        (GgmlDType::BF16, 4e-3),
        (GgmlDType::Q8_0, 1e-2),
        (GgmlDType::Q4_0, 0.1),
        (GgmlDType::Q4_1, 0.1),
        (GgmlDType::Q5_0, 0.05),
        (GgmlDType::Q4K, 0.1),
        (GgmlDType::Q5K, 0.05),
        (GgmlDType::Q6K, 0.03),
    ];
    let tmp = tempfile::tempdir().unwrap();
    for (dtype, tol) in cases {
        use gguf_file::Value::*;
        let meta: Meta = [
            ("general.architecture", String("llama".into())),
            ("llama.block_count", U32(1)),
            ("llama.context_length", U32(16)),
            ("llama.embedding_length", U32(cols as u32)),
            ("llama.feed_forward_length", U32(8)),
            ("llama.attention.head_count", U32(2)),
            ("llama.attention.layer_norm_rms_epsilon", F32(1e-5)),
            ("llama.vocab_size", U32(rows as u32)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let d = cols;
        let small = |n: usize| -> Vec<f32> { (0..n).map(|i| (i as f32 * 0.37).cos() * 0.02).collect() };
        let mut tensors = vec![("token_embd.weight".to_string(), qtensor(&emb, &[rows, cols], dtype))];
        tensors.push(("output_norm.weight".into(), qtensor(&vec![1.0; d], &[d], GgmlDType::F32)));
        for (name, shape) in block_shapes(d, 8) {
            let n = shape.iter().product();
            tensors.push((format!("blk.0.{name}.weight"), qtensor(&small(n), &shape, GgmlDType::F32)));
        }
        let path = tmp.path().join(format!("{dtype:?}.gguf"));
        write_gguf(&path, &meta, &tensors);
        let bundle = load_model::<B>(path.to_str().unwrap(), &LoadOptions::default(), &Default::default())
            .unwrap_or_else(|e| panic!("{dtype:?}: {e}"));
        let got = values(bundle.model.embeddings.word.clone());
        let err = max_abs_diff(&got, &emb);
        eprintln!("{dtype:?}: max |dequantized - original| = {err:.2e} (bound {tol:.0e})");
        assert!(err <= tol, "{dtype:?}: {err} > {tol}");
    }
}

#[test]
fn unsupported_gguf_contents_are_refused_by_name() {
    use gguf_file::Value::*;
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("x.gguf");
    let mut meta = tiny_llama_meta();
    meta[0].1 = String("mamba".into());
    write_gguf(&path, &meta, &tiny_llama_tensors());
    let err = load_model::<B>(path.to_str().unwrap(), &LoadOptions::default(), &Default::default()).unwrap_err();
    assert!(matches!(err, LoadError::UnsupportedArch { ref model_type, .. } if model_type.contains("mamba")), "{err}");

    let mut meta = tiny_llama_meta();
    meta.push(("tokenizer.ggml.model".into(), String("gpt2".into())));
    meta.push(("tokenizer.ggml.pre".into(), String("deepseek-llm".into())));
    meta.push(("tokenizer.ggml.tokens".into(), Array((0..83).map(|i| String(format!("t{i}"))).collect())));
    meta.push(("tokenizer.ggml.merges".into(), Array(Vec::new())));
    write_gguf(&path, &meta, &tiny_llama_tensors());
    let err = load_model::<B>(path.to_str().unwrap(), &LoadOptions::default(), &Default::default()).unwrap_err();
    assert!(err.to_string().contains("pre-tokenizer 'deepseek-llm'"), "{err}");

    // A tensor the model does not use is reported, not dropped.
    let mut tensors = tiny_llama_tensors();
    tensors.push(("blk.0.ffn_gate_inp.weight".into(), qtensor(&[0.0; 32], &[1, 32], GgmlDType::F32)));
    write_gguf(&path, &tiny_llama_meta(), &tensors);
    let err = load_model::<B>(path.to_str().unwrap(), &LoadOptions::default(), &Default::default()).unwrap_err();
    assert!(
        matches!(err, LoadError::UnexpectedTensors { ref names } if names == &["blk.0.ffn_gate_inp.weight"]),
        "{err}"
    );

    // Two GGUF files in a folder: the user must pick one.
    std::fs::copy(&path, tmp.path().join("y.gguf")).unwrap();
    let err = load_model::<B>(tmp.path().to_str().unwrap(), &LoadOptions::default(), &Default::default()).unwrap_err();
    assert!(err.to_string().contains("several GGUF files"), "{err}");
}
