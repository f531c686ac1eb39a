//! GGUF checkpoints (llama.cpp's format): weights dequantized to f32, the config from the
//! metadata, the tokenizer from `tokenizer.ggml.*`. A GGUF file becomes what a Hugging Face
//! folder gives the loaders: an [`HfConfig`], a [`WeightMap`] under transformers' tensor names
//! (with llama.cpp's q/k row permutation undone) and a [`TextTokenizer`], so it loads through
//! the same strict path as safetensors.
//!
//! The file format and the dequantization (F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1,
//! Q2_K … Q8_K) are candle-core's `quantized` module; written here are only the name map, the
//! metadata → config mapping and the tokenizer assembly, which no crate does the way
//! transformers does.

mod config;
mod tokenizer;
mod validate;

use std::collections::HashMap;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::{Content, Value};

use crate::config::{Arch, HfConfig};
use crate::error::LoadError;
use crate::tokenizer::TextTokenizer;
use crate::weights::{RawTensor, WeightMap};

/// An opened GGUF file: its metadata and tensor directory (tensors are read on demand).
pub struct GgufFile {
    content: Content,
    path: PathBuf,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("tensors", &self.content.tensor_infos.len())
            .field("metadata", &self.content.metadata.len())
            .finish()
    }
}

/// Whether `path` names a GGUF file (by extension).
pub fn is_gguf(path: &Path) -> bool {
    path.is_file() && path.extension().is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
}

/// The one `.gguf` file of a folder: `Ok(None)` when there is none, an error when several
/// (the user must name one).
pub fn find_in_dir(dir: &Path) -> Result<Option<PathBuf>, LoadError> {
    let entries = std::fs::read_dir(dir).map_err(|source| LoadError::Io { path: dir.to_path_buf(), source })?;
    let mut found: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| is_gguf(p)).collect();
    found.sort();
    match found.len() {
        0 => Ok(None),
        1 => Ok(found.pop()),
        _ => Err(LoadError::Gguf {
            path: dir.to_path_buf(),
            reason: format!(
                "the folder holds several GGUF files ({}); pass one of them as the model",
                found.iter().filter_map(|p| p.file_name()).map(|n| n.to_string_lossy()).collect::<Vec<_>>().join(", ")
            ),
        }),
    }
}

impl GgufFile {
    /// Reads the header, metadata and tensor directory of `path`.
    pub fn open(path: &Path) -> Result<Self, LoadError> {
        validate::check_header(path)?;
        let mut reader =
            BufReader::new(File::open(path).map_err(|source| LoadError::Io { path: path.into(), source })?);
        let content = Content::read(&mut reader).map_err(|e| gguf_err(path, e))?;
        Ok(Self { content, path: path.to_path_buf() })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A metadata value.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.content.metadata.get(key)
    }

    /// `general.architecture`.
    pub fn architecture(&self) -> Result<&str, LoadError> {
        match self.get("general.architecture") {
            Some(Value::String(s)) => Ok(s),
            _ => Err(self.error("no general.architecture string in the metadata")),
        }
    }

    /// The config the metadata describes, with `rope_freqs.weight` (if any) as its RoPE factors.
    pub fn config(&self) -> Result<HfConfig, LoadError> {
        config::hf_config(self)
    }

    /// The tokenizer of `tokenizer.ggml.*`.
    pub fn tokenizer(&self) -> Result<TextTokenizer, LoadError> {
        tokenizer::build(self)
    }

    /// Every tensor dequantized to f32 under transformers' names, for the architecture of
    /// `cfg`. Tensors with no transformers counterpart keep their GGUF names, so that
    /// [`WeightMap::finish`] reports them instead of dropping them; `rope_freqs.weight` is in
    /// the config.
    pub fn weights(&self, cfg: &HfConfig) -> Result<WeightMap, LoadError> {
        let HfConfig::Llama(arch, c) = cfg else {
            return Err(self.error("only Llama-family GGUF files are supported"));
        };
        // llama.cpp permutes the rows of q and k of `llama` checkpoints for its adjacent-pair
        // RoPE; transformers' GGUF loader undoes it, and so does this.
        let permuted = *arch == Arch::Llama;
        let n_kv = c.num_key_value_heads.unwrap_or(c.num_attention_heads);
        let mut file =
            BufReader::new(File::open(&self.path).map_err(|source| LoadError::Io { path: self.path.clone(), source })?);
        let mut tensors = HashMap::new();
        let mut names: Vec<&String> = self.content.tensor_infos.keys().collect();
        names.sort();
        for name in names {
            if name == config::ROPE_FREQS {
                continue;
            }
            let mut t = self.read_tensor(&mut file, name)?;
            let hf = hf_name(name);
            if permuted && t.shape.len() <= 2 {
                if name.contains(".attn_q.") {
                    t = unpermute_rows(t, c.num_attention_heads);
                } else if name.contains(".attn_k.") {
                    t = unpermute_rows(t, n_kv);
                }
            }
            tensors.insert(hf.unwrap_or_else(|| name.clone()), t);
        }
        Ok(WeightMap::from_tensors(tensors))
    }

    /// One tensor, dequantized, in row-major order (GGUF lists dimensions fastest first;
    /// candle reverses them).
    pub(crate) fn read_tensor(&self, file: &mut BufReader<File>, name: &str) -> Result<RawTensor, LoadError> {
        let bad = |e: candle_core::Error| LoadError::Gguf {
            path: self.path.clone(),
            reason: format!("tensor '{name}': {e}"),
        };
        let q = self.content.tensor(file, name, &candle_core::Device::Cpu).map_err(bad)?;
        let shape = q.shape().dims().to_vec();
        let data =
            q.dequantize(&candle_core::Device::Cpu).and_then(|t| t.flatten_all()?.to_vec1::<f32>()).map_err(bad)?;
        Ok(RawTensor { shape, data })
    }

    /// Whether the file holds a tensor of that GGUF name.
    pub fn has_tensor(&self, name: &str) -> bool {
        self.content.tensor_infos.contains_key(name)
    }

    fn error(&self, reason: impl Into<String>) -> LoadError {
        LoadError::Gguf { path: self.path.clone(), reason: reason.into() }
    }
}

fn gguf_err(path: &Path, e: candle_core::Error) -> LoadError {
    LoadError::Gguf { path: path.to_path_buf(), reason: e.to_string() }
}

/// transformers' name of a llama.cpp tensor name (`blk.3.attn_q.weight` →
/// `model.layers.3.self_attn.q_proj.weight`); `None` for names with no counterpart.
fn hf_name(name: &str) -> Option<String> {
    match name {
        "token_embd.weight" => return Some("model.embed_tokens.weight".into()),
        "output_norm.weight" => return Some("model.norm.weight".into()),
        "output.weight" => return Some("lm_head.weight".into()),
        _ => {}
    }
    let rest = name.strip_prefix("blk.")?;
    let (layer, rest) = rest.split_once('.')?;
    layer.parse::<usize>().ok()?;
    let (part, kind) = rest.rsplit_once('.')?;
    let hf = match part {
        "attn_norm" => "input_layernorm",
        "ffn_norm" => "post_attention_layernorm",
        "attn_q" => "self_attn.q_proj",
        "attn_k" => "self_attn.k_proj",
        "attn_v" => "self_attn.v_proj",
        "attn_output" => "self_attn.o_proj",
        "ffn_gate" => "mlp.gate_proj",
        "ffn_up" => "mlp.up_proj",
        "ffn_down" => "mlp.down_proj",
        _ => return None,
    };
    Some(format!("model.layers.{layer}.{hf}.{kind}"))
}

/// Undoes llama.cpp's `permute` of q/k rows: within each head, row `2i + j` (pair `i`, half
/// `j`) goes back to row `j · head_dim/2 + i`, the halves that `rotate_half` pairs.
///
/// # Shapes
/// - `t`: `[heads · head_dim, cols]` or `[heads · head_dim]`; output: same
fn unpermute_rows(t: RawTensor, heads: usize) -> RawTensor {
    let rows = t.shape[0];
    let cols = t.shape.get(1).copied().unwrap_or(1);
    if heads == 0 || !rows.is_multiple_of(2 * heads) {
        return t;
    }
    let hd = rows / heads;
    let mut data = vec![0.0f32; t.data.len()];
    for h in 0..heads {
        for i in 0..hd / 2 {
            for j in 0..2 {
                let from = h * hd + 2 * i + j;
                let to = h * hd + j * (hd / 2) + i;
                data[to * cols..(to + 1) * cols].copy_from_slice(&t.data[from * cols..(from + 1) * cols]);
            }
        }
    }
    RawTensor { shape: t.shape, data }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llama_cpp_names_map_to_transformers_names() {
        assert_eq!(hf_name("blk.12.attn_k.weight").as_deref(), Some("model.layers.12.self_attn.k_proj.weight"));
        assert_eq!(hf_name("blk.0.attn_q.bias").as_deref(), Some("model.layers.0.self_attn.q_proj.bias"));
        assert_eq!(hf_name("blk.1.ffn_down.weight").as_deref(), Some("model.layers.1.mlp.down_proj.weight"));
        assert_eq!(hf_name("token_embd.weight").as_deref(), Some("model.embed_tokens.weight"));
        assert_eq!(hf_name("blk.1.ffn_gate_exps.weight"), None);
        assert_eq!(hf_name("blk.x.attn_q.weight"), None);
    }

    #[test]
    fn unpermuting_inverts_llama_cpp_permutation() {
        // llama.cpp: w.reshape(heads, 2, hd/2, cols).swapaxes(1, 2): row (h, half, i) -> (h, i, half).
        let (heads, hd, cols) = (2, 6, 3);
        let hf: Vec<f32> = (0..heads * hd * cols).map(|x| x as f32).collect();
        let mut permuted = vec![0.0; hf.len()];
        for h in 0..heads {
            for half in 0..2 {
                for i in 0..hd / 2 {
                    let from = h * hd + half * (hd / 2) + i;
                    let to = h * hd + 2 * i + half;
                    permuted[to * cols..(to + 1) * cols].copy_from_slice(&hf[from * cols..(from + 1) * cols]);
                }
            }
        }
        let back = unpermute_rows(RawTensor { shape: vec![heads * hd, cols], data: permuted }, heads);
        assert_eq!(back.data, hf);
    }
}
