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
    let mask_text = tok
        .mask_token()
        .map(|(t, _)| t.to_string())
        .unwrap_or_else(|| "[MASK]".into());
    let ids = match objective {
        Objective::MaskedLm => tok.encode(text, true)?,
        Objective::CausalLm => {
            if text.contains(&mask_text) {
                return Err(TextError::UnexpectedMask {
                    prompt: text.into(),
                    mask: mask_text,
                });
            }
            tok.encode(text, false)?
        }
    };
    if ids.len() > dims.max_positions {
        return Err(TextError::TooLong {
            len: ids.len(),
            max: dims.max_positions,
        });
    }
    let target_positions = match objective {
        Objective::MaskedLm => {
            let pos = tok.mask_positions(&ids);
            if pos.is_empty() {
                return Err(TextError::NoMask {
                    prompt: text.into(),
                    mask: mask_text,
                });
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
    Ok(EncodedPrompt {
        ids,
        target_positions,
    })
}
