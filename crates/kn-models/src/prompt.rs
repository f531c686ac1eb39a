//! Turning prompt text into checked model input.

use kn_core::{ModelDims, Objective};

use crate::error::TextError;
use crate::tokenizer::TextTokenizer;

/// An encoded prompt and the position where the model predicts the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedPrompt {
    /// Token ids (with `[CLS]`/`[SEP]` for masked LMs).
    pub ids: Vec<u32>,
    /// `[MASK]` positions (masked LM), or the last position (causal LM).
    pub target_positions: Vec<usize>,
}

/// Encodes `text` for a model with objective `objective`: a masked LM needs exactly
/// `n_masks` mask tokens, a causal LM none (it predicts what follows the prompt).
pub fn encode_prompt(
    tok: &TextTokenizer,
    dims: &ModelDims,
    objective: Objective,
    text: &str,
    n_masks: usize,
) -> Result<EncodedPrompt, TextError> {
    if text.trim().is_empty() {
        return Err(TextError::Empty { what: "prompt" });
    }
    let mask_text = tok.mask_token().map(|(t, _)| t.to_string()).unwrap_or_else(|| "[MASK]".into());
    let ids = match objective {
        Objective::MaskedLm => tok.encode(text, true)?,
        Objective::CausalLm => {
            if text.contains(&mask_text) {
                return Err(TextError::UnexpectedMask { prompt: text.into(), mask: mask_text });
            }
            // With the special tokens the tokenizer adds (Llama's BOS; none for GPT-2 and SmolLM2).
            tok.encode(text, true)?
        }
    };
    if ids.len() > dims.max_positions {
        return Err(TextError::TooLong { len: ids.len(), max: dims.max_positions });
    }
    let target_positions = match objective {
        Objective::MaskedLm => {
            let pos = tok.mask_positions(&ids);
            if pos.is_empty() {
                return Err(TextError::NoMask { prompt: text.into(), mask: mask_text });
            }
            if pos.len() != n_masks {
                return Err(TextError::MaskCount {
                    prompt: text.into(),
                    mask: mask_text,
                    count: pos.len(),
                    expected: n_masks,
                });
            }
            pos
        }
        Objective::CausalLm => vec![ids.len() - 1],
    };
    Ok(EncodedPrompt { ids, target_positions })
}

/// The ids `target` gets when it follows `prompt` (see [`prompt_queries`]).
pub fn continuation_ids(tok: &TextTokenizer, prompt: &str, target: &str) -> Result<Vec<u32>, TextError> {
    if target.trim().is_empty() {
        return Err(TextError::Empty { what: "target" });
    }
    let joined = if target.starts_with(char::is_whitespace) || prompt.ends_with(char::is_whitespace) {
        format!("{prompt}{target}")
    } else {
        format!("{prompt} {target}")
    };
    let alone = tok.encode(prompt, false)?;
    let both = tok.encode(&joined, false)?;
    match both.strip_prefix(alone.as_slice()) {
        Some(rest) if !rest.is_empty() => Ok(rest.to_vec()),
        _ => Err(TextError::TargetBoundary { prompt: prompt.into(), target: target.into() }),
    }
}

/// How a target of several tokens is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MultiToken {
    /// Masked LM: one `[MASK]` in the prompt becomes one per target piece; causal LM: the
    /// target tokens are teacher-forced.
    #[default]
    Expand,
    /// A target of several tokens is an error.
    Refuse,
}

/// A prompt and target turned into model queries, with what the text became.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptQueries {
    /// Queries for [`kn_core::attribute`] and [`kn_core::measure`].
    pub queries: Vec<kn_core::Query>,
    /// Target token ids.
    pub target_ids: Vec<u32>,
    /// The prompt text actually encoded (after `[MASK]` expansion).
    pub prompt: String,
}

/// Encodes `prompt` and `target` for `objective`.
///
/// Causal LMs predict the target right after the prompt, so its ids are the tokens the text
/// `prompt + " " + target` has after those of `prompt` (no space is added when either side
/// already has white space there): `" Paris"` for byte-level BPE (GPT-2, Llama 3, SmolLM2),
/// `"▁Paris"` for SentencePiece (Llama 2), whatever each tokenizer does with a leading space.
/// When the prompt's own tokens change once the target follows (a prompt ending in a space,
/// or a merge across the boundary) that is an error, not a silently different target. With
/// `raw_target` the target is encoded on its own, exactly as given.
pub fn prompt_queries(
    tok: &TextTokenizer,
    dims: &ModelDims,
    objective: Objective,
    prompt: &str,
    target: &str,
    multi: MultiToken,
    raw_target: bool,
) -> Result<PromptQueries, TextError> {
    let target_ids = match objective {
        Objective::CausalLm if !raw_target => continuation_ids(tok, prompt, target)?,
        _ => tok.target_ids(target)?,
    };
    if target_ids.len() > 1 && multi == MultiToken::Refuse {
        return Err(TextError::MaskCount {
            prompt: format!("target {target:?} is {} tokens", target_ids.len()),
            mask: "target token".into(),
            count: target_ids.len(),
            expected: 1,
        });
    }
    let mask = tok.mask_token().map(|(t, _)| t.to_string()).unwrap_or_else(|| "[MASK]".into());
    let text = match objective {
        Objective::MaskedLm if target_ids.len() > 1 && prompt.matches(&mask).count() == 1 => {
            prompt.replace(&mask, &vec![mask.as_str(); target_ids.len()].join(" "))
        }
        _ => prompt.to_string(),
    };
    let n_masks = if objective == Objective::MaskedLm { target_ids.len() } else { 0 };
    let enc = encode_prompt(tok, dims, objective, &text, n_masks)?;
    let queries = kn_core::Query::for_target(objective, dims, &enc.ids, &enc.target_positions, &target_ids)?;
    Ok(PromptQueries { queries, target_ids, prompt: text })
}
