//! The tokenizer of a GGUF file (`tokenizer.ggml.*`), assembled with the `tokenizers` crate.
//!
//! Byte-level BPE (`tokenizer.ggml.model = gpt2`) from the vocabulary and merges, with the
//! pre-tokenizer llama.cpp names in `tokenizer.ggml.pre` (its `llama-vocab.cpp` regexes, which
//! are the ones of the models' own `tokenizer.json`): `default`/`gpt2` (GPT-2's split),
//! `smollm` and the others llama.cpp gives the same rule (every digit alone, then GPT-2's
//! split), `llama-bpe` (Llama 3: runs of up to 3 digits) and `qwen2` (single digits, NFC).
//! Control and user-defined tokens are added tokens, matched whole in the text. A BOS token is
//! added only where `tokenizer.ggml.add_bos_token` says so (SmolLM2: no); an EOS never is:
//! prompts are continued, not ended.
//!
//! On SmolLM2 the ids equal those of the tokenizer transformers converts from the same file
//! (`add_special_tokens=False`; tested), whose pre-tokenizer is GPT-2's split without the digit
//! rule: the vocabulary has no multi-digit tokens, so the two agree.

use candle_core::quantized::gguf_file::Value;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::normalizers::unicode::NFC;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, SplitDelimiterBehavior, Tokenizer};

use super::config::uint;
use super::GgufFile;
use crate::error::LoadError;
use crate::tokenizer::TextTokenizer;

/// llama.cpp's `LLAMA_VOCAB_PRE_TYPE_LLAMA3` split.
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// llama.cpp's `LLAMA_VOCAB_PRE_TYPE_QWEN2` split.
const QWEN2_SPLIT: &str =
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// GGUF token types (llama.cpp `llama_token_type`).
const CONTROL: u64 = 3;
const USER_DEFINED: u64 = 4;

/// Builds the tokenizer of `f`.
pub(super) fn build(f: &GgufFile) -> Result<TextTokenizer, LoadError> {
    let model = string(f, "tokenizer.ggml.model")?;
    if model != "gpt2" {
        return Err(f.error(format!(
            "tokenizer model '{model}' is not supported (only byte-level BPE, 'gpt2'); \
             pass --tokenizer with the folder of the model's tokenizer.json"
        )));
    }
    let tokens = strings(f, "tokenizer.ggml.tokens")?;
    let merges = strings(f, "tokenizer.ggml.merges")?
        .into_iter()
        .map(|m| {
            m.split_once(' ')
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .ok_or_else(|| f.error(format!("merge '{m}' is not two tokens")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let id_of = |k: &str| f.get(k).and_then(uint).map(|i| i as u32).filter(|&i| (i as usize) < tokens.len());
    let unk = id_of("tokenizer.ggml.unknown_token_id");
    let vocab: Vocab = tokens.iter().enumerate().map(|(i, t)| (t.clone(), i as u32)).collect();
    let mut bpe = BPE::builder().vocab_and_merges(vocab, merges);
    if let Some(u) = unk {
        bpe = bpe.unk_token(tokens[u as usize].clone());
    }
    let bpe = bpe.build().map_err(|e| f.error(format!("BPE: {e}")))?;
    let mut inner = Tokenizer::new(bpe);
    let pre = match f.get("tokenizer.ggml.pre") {
        Some(Value::String(s)) => s.as_str(),
        None => "default",
        Some(other) => return Err(f.error(format!("tokenizer.ggml.pre is not a string: {other:?}"))),
    };
    let gpt2 = || ByteLevel::new(false, false, true);
    let split = |regex: &str| -> Result<PreTokenizerWrapper, LoadError> {
        let s = Split::new(SplitPattern::Regex(regex.into()), SplitDelimiterBehavior::Isolated, false)
            .map_err(|e| f.error(format!("pre-tokenizer regex: {e}")))?;
        Ok(Sequence::new(vec![s.into(), ByteLevel::new(false, false, false).into()]).into())
    };
    let pre_tokenizer: PreTokenizerWrapper = match pre {
        "default" | "gpt2" | "gpt-2" | "mpt" | "olmo" | "jais" => gpt2().into(),
        "smollm" | "starcoder" | "refact" | "command-r" | "codeshell" | "exaone" | "minerva-7b" => {
            Sequence::new(vec![Digits::new(true).into(), gpt2().into()]).into()
        }
        "llama-bpe" | "llama3" | "smaug-bpe" => split(LLAMA3_SPLIT)?,
        "qwen2" => {
            inner.with_normalizer(Some(NFC));
            split(QWEN2_SPLIT)?
        }
        other => {
            return Err(f.error(format!(
                "pre-tokenizer '{other}' is not supported (default, smollm, llama-bpe, qwen2 and the names llama.cpp \
                 gives their rules); pass --tokenizer with the folder of the model's tokenizer.json"
            )))
        }
    };
    inner.with_pre_tokenizer(Some(pre_tokenizer));
    inner.with_decoder(Some(ByteLevelDecoder::default()));
    if let Some(Value::Array(types)) = f.get("tokenizer.ggml.token_type") {
        let mut special = Vec::new();
        let mut user = Vec::new();
        for (t, ty) in tokens.iter().zip(types) {
            match uint(ty) {
                Some(CONTROL) => special.push(AddedToken::from(t.clone(), true)),
                Some(USER_DEFINED) => user.push(AddedToken::from(t.clone(), false).normalized(false)),
                _ => {}
            }
        }
        inner.add_special_tokens(&special);
        inner.add_tokens(&user);
    }
    let add_bos = matches!(f.get("tokenizer.ggml.add_bos_token"), Some(Value::Bool(true)));
    if add_bos {
        let bos = id_of("tokenizer.ggml.bos_token_id")
            .ok_or_else(|| f.error("add_bos_token without a valid bos_token_id"))?;
        let text = tokens[bos as usize].clone();
        let post = TemplateProcessing::builder()
            .try_single(format!("{text} $A"))
            .and_then(|b| b.try_pair(format!("{text} $A {text} $B")))
            .map_err(|e| f.error(format!("BOS template: {e}")))?
            .special_tokens(vec![(text, bos)])
            .build()
            .map_err(|e| f.error(format!("BOS template: {e}")))?;
        inner.with_post_processor(Some(post));
    }
    let unk = unk.map(|u| (tokens[u as usize].clone(), u));
    Ok(TextTokenizer::assembled(inner, f.path(), unk, id_of("tokenizer.ggml.padding_token_id")))
}

fn string<'a>(f: &'a GgufFile, key: &str) -> Result<&'a str, LoadError> {
    match f.get(key) {
        Some(Value::String(s)) => Ok(s),
        _ => Err(f.error(format!("metadata '{key}' (a string) is missing"))),
    }
}

fn strings(f: &GgufFile, key: &str) -> Result<Vec<String>, LoadError> {
    match f.get(key) {
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.clone()),
                other => Err(f.error(format!("'{key}' holds a non-string {other:?}"))),
            })
            .collect(),
        _ => Err(f.error(format!("metadata '{key}' (an array of strings) is missing"))),
    }
}
