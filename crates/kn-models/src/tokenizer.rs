//! Text ↔ token ids: `tokenizer.json`, or a vocabulary (`vocab.txt` WordPiece, `vocab.json` +
//! `merges.txt` byte-level BPE) assembled as Hugging Face does; locating `[MASK]`; target words
//! as token ids, with no silent `[UNK]`.

use std::path::{Path, PathBuf};

use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::decoders::wordpiece::WordPiece as WordPieceDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::bert::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::processors::bert::BertProcessing;
use tokenizers::{AddedToken, Tokenizer};

use crate::error::{LoadError, TextError};
use crate::weights::read_to_string;

/// A tokenizer with the model's special tokens resolved.
#[derive(Debug, Clone)]
pub struct TextTokenizer {
    inner: Tokenizer,
    /// `[MASK]` (or `<mask>`) text and id, when the vocabulary has one.
    mask: Option<(String, u32)>,
    /// Unknown-token text and id, when the vocabulary has one.
    unk: Option<(String, u32)>,
    /// Id used for padding.
    pad_id: u32,
    /// Where it was loaded from (for errors).
    source: PathBuf,
}

/// `tokenizer_config.json`, the keys we honour.
#[derive(Debug, Default, serde::Deserialize)]
struct TokenizerConfig {
    do_lower_case: Option<bool>,
    strip_accents: Option<bool>,
    /// transformers' `unk_token`: a string, or an added-token object with `content`.
    unk_token: Option<serde_json::Value>,
}

impl TextTokenizer {
    /// Loads the tokenizer of a model folder: `tokenizer.json` when present, otherwise
    /// `vocab.txt` (WordPiece; lower-casing per `tokenizer_config.json`, default on), otherwise
    /// `vocab.json` + `merges.txt` (or `encoder.json` + `vocab.bpe`) as byte-level BPE.
    ///
    /// The unknown token is `tokenizer_config.json`'s `unk_token` when it names a token of the
    /// vocabulary (as transformers reads it), else the tokenizer model's own.
    pub fn from_dir(dir: &Path) -> Result<Self, LoadError> {
        let cfg = read_tokenizer_config(dir)?;
        let json = dir.join("tokenizer.json");
        let mut tok = if json.is_file() {
            Self::from_tokenizer_json(&json)?
        } else if dir.join("vocab.txt").is_file() {
            Self::wordpiece(&dir.join("vocab.txt"), cfg.do_lower_case.unwrap_or(true), cfg.strip_accents)?
        } else if let Some((vocab, merges)) = [("vocab.json", "merges.txt"), ("encoder.json", "vocab.bpe")]
            .iter()
            .find(|(v, m)| dir.join(v).is_file() && dir.join(m).is_file())
        {
            Self::byte_level_bpe(&dir.join(vocab), &dir.join(merges))?
        } else {
            return Err(LoadError::NoTokenizer { dir: dir.to_path_buf() });
        };
        let declared = cfg.unk_token.as_ref().and_then(|v| v.as_str().or_else(|| v.get("content")?.as_str()));
        if let Some(id) = declared.and_then(|t| tok.inner.token_to_id(t)) {
            tok.unk = declared.map(|t| (t.to_string(), id));
        }
        Ok(tok)
    }

    /// A `tokenizer.json`, with padding and truncation turned off.
    pub fn from_tokenizer_json(path: &Path) -> Result<Self, LoadError> {
        let mut inner = Tokenizer::from_file(path).map_err(|e| tok_err(path, e))?;
        inner.with_padding(None);
        inner.with_truncation(None).map_err(|e| tok_err(path, e))?;
        Ok(Self::finish(inner, path))
    }

    /// BERT's WordPiece tokenizer from a `vocab.txt` (as `BertTokenizer`).
    pub fn wordpiece(vocab: &Path, lowercase: bool, strip_accents: Option<bool>) -> Result<Self, LoadError> {
        let path = vocab.to_string_lossy().to_string();
        let model = WordPiece::from_file(&path).unk_token("[UNK]".into()).build().map_err(|e| tok_err(vocab, e))?;
        let mut inner = Tokenizer::new(model);
        inner.with_normalizer(Some(BertNormalizer::new(true, true, strip_accents, lowercase)));
        inner.with_pre_tokenizer(Some(BertPreTokenizer));
        inner.with_decoder(Some(WordPieceDecoder::default()));
        let id = |t: &str| inner.token_to_id(t);
        if let (Some(sep), Some(cls)) = (id("[SEP]"), id("[CLS]")) {
            inner.with_post_processor(Some(BertProcessing::new(("[SEP]".into(), sep), ("[CLS]".into(), cls))));
        }
        let specials: Vec<AddedToken> = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
            .iter()
            .filter(|t| inner.token_to_id(t).is_some())
            .map(|t| AddedToken::from(t.to_string(), true))
            .collect();
        inner.add_special_tokens(&specials);
        Ok(Self::finish(inner, vocab))
    }

    /// GPT-2's byte-level BPE from a vocabulary and merges file.
    pub fn byte_level_bpe(vocab: &Path, merges: &Path) -> Result<Self, LoadError> {
        let model = BPE::from_file(&vocab.to_string_lossy(), &merges.to_string_lossy())
            .build()
            .map_err(|e| tok_err(vocab, e))?;
        let mut inner = Tokenizer::new(model);
        inner.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
        inner.with_decoder(Some(ByteLevelDecoder::default()));
        let eot = inner.token_to_id("<|endoftext|>");
        if eot.is_some() {
            inner.add_special_tokens(&[AddedToken::from("<|endoftext|>", true)]);
        }
        let mut tok = Self::finish(inner, vocab);
        // transformers' GPT2Tokenizer declares <|endoftext|> its unknown token.
        if let Some(id) = eot.filter(|_| tok.unk.is_none()) {
            tok.unk = Some(("<|endoftext|>".into(), id));
        }
        Ok(tok)
    }

    /// A tokenizer assembled elsewhere (a GGUF file's metadata), whose unknown token and
    /// padding id are known; the mask token is looked up as usual.
    pub(crate) fn assembled(inner: Tokenizer, source: &Path, unk: Option<(String, u32)>, pad_id: Option<u32>) -> Self {
        let mut t = Self::finish(inner, source);
        t.unk = unk;
        if let Some(pad) = pad_id {
            t.pad_id = pad;
        }
        t
    }

    fn finish(inner: Tokenizer, source: &Path) -> Self {
        let find = |cands: &[&str]| cands.iter().find_map(|t| inner.token_to_id(t).map(|id| (t.to_string(), id)));
        let mask = find(&["[MASK]", "<mask>"]);
        // The model's own unknown token (a BPE model's `unk_token`), else the usual spellings.
        let model_unk = match inner.get_model() {
            tokenizers::ModelWrapper::BPE(bpe) => bpe.unk_token.clone(),
            tokenizers::ModelWrapper::WordPiece(wp) => Some(wp.unk_token.clone()),
            _ => None,
        };
        let unk = model_unk.and_then(|t| inner.token_to_id(&t).map(|id| (t, id))).or_else(|| find(&["[UNK]", "<unk>"]));
        let pad_id = find(&["[PAD]", "<pad>", "<|endoftext|>"]).map_or(0, |(_, id)| id);
        Self { inner, mask, unk, pad_id, source: source.to_path_buf() }
    }

    /// The file this tokenizer came from.
    pub fn source(&self) -> &Path {
        &self.source
    }

    /// Vocabulary size, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The mask token's text and id.
    pub fn mask_token(&self) -> Option<(&str, u32)> {
        self.mask.as_ref().map(|(t, id)| (t.as_str(), *id))
    }

    /// The unknown token's text and id, when the tokenizer declares one (WordPiece `[UNK]`,
    /// Llama 2's `<unk>`, a GGUF file's `unknown_token_id`); byte-level BPE vocabularies such as
    /// GPT-2's and Llama 3's have none.
    pub fn unk_token(&self) -> Option<(&str, u32)> {
        self.unk.as_ref().map(|(t, id)| (t.as_str(), *id))
    }

    /// Padding id.
    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    /// Encodes text; fails if a piece of it becomes the unknown token (a literal `[UNK]` in the
    /// text is allowed).
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>, TextError> {
        let enc = self.inner.encode(text, add_special_tokens).map_err(|e| TextError::Tokenizer(e.to_string()))?;
        if let Some((unk, unk_id)) = &self.unk {
            for (i, &id) in enc.get_ids().iter().enumerate() {
                if id != *unk_id {
                    continue;
                }
                let (a, b) = enc.get_offsets()[i];
                let piece = text.get(a..b).unwrap_or("").to_string();
                if piece != *unk {
                    return Err(TextError::Unknown { text: text.to_string(), piece, unk: unk.clone() });
                }
            }
        }
        Ok(enc.get_ids().to_vec())
    }

    /// Positions of the mask token in `ids`.
    pub fn mask_positions(&self, ids: &[u32]) -> Vec<usize> {
        match &self.mask {
            Some((_, m)) => ids.iter().enumerate().filter(|(_, &i)| i == *m).map(|(p, _)| p).collect(),
            None => Vec::new(),
        }
    }

    /// Token ids of a target word, without special tokens. Several ids is not an error here:
    /// the caller decides (several `[MASK]`, teacher forcing, or refusal).
    pub fn target_ids(&self, target: &str) -> Result<Vec<u32>, TextError> {
        if target.trim().is_empty() {
            return Err(TextError::Empty { what: "target" });
        }
        self.encode(target, false)
    }

    /// The text of one token id (`None` past the vocabulary).
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// Decodes ids to text (special tokens kept).
    pub fn decode(&self, ids: &[u32]) -> String {
        self.inner.decode(ids, false).unwrap_or_default()
    }
}

fn read_tokenizer_config(dir: &Path) -> Result<TokenizerConfig, LoadError> {
    let path = dir.join("tokenizer_config.json");
    if !path.is_file() {
        return Ok(TokenizerConfig::default());
    }
    let text = read_to_string(&path)?;
    serde_json::from_str(&text).map_err(|source| LoadError::Json { path, source })
}

fn tok_err(path: &Path, e: impl std::fmt::Display) -> LoadError {
    LoadError::Tokenizer { path: path.to_path_buf(), reason: e.to_string() }
}
