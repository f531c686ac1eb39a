//! Turning a fact's sentences into model queries: text through a tokenizer, or the planted
//! world's word-level vocabulary.

use anyhow::{anyhow, bail, Result};
use kn_core::{KnowledgeModel, ModelDims, Objective, Query};
use kn_models::prompt::{prompt_queries, MultiToken};
use kn_models::TextTokenizer;

/// Encodes `(sentence, object)` pairs for one model.
pub trait Encoder {
    /// Queries for one prompt, or an error naming what is wrong.
    fn queries(&self, sentence: &str, object: &str) -> Result<Vec<Query>>;
    /// Token ids of an object as it follows `sentence` (to flag multi-token objects).
    fn object_ids(&self, sentence: &str, object: &str) -> Result<Vec<u32>>;
}

/// Text prompts through the model's tokenizer.
pub struct TextEncoder<'a> {
    /// Tokenizer.
    pub tok: &'a TextTokenizer,
    /// Model sizes.
    pub dims: ModelDims,
    /// Masked or causal.
    pub objective: Objective,
}

impl Encoder for TextEncoder<'_> {
    fn queries(&self, sentence: &str, object: &str) -> Result<Vec<Query>> {
        Ok(prompt_queries(self.tok, &self.dims, self.objective, sentence, object, MultiToken::Expand, false)?.queries)
    }

    fn object_ids(&self, sentence: &str, object: &str) -> Result<Vec<u32>> {
        Ok(match self.objective {
            // The tokens the object has after the prompt (" Paris", "▁Paris"), as its queries get.
            Objective::CausalLm => kn_models::prompt::continuation_ids(self.tok, sentence, object)?,
            Objective::MaskedLm => self.tok.target_ids(object)?,
        })
    }
}

/// The planted world: words `t{k}`, `s{f}`, `o{f}` and `[MASK]`, one token each.
pub struct PlantedEncoder {
    /// Templates.
    pub n_templates: usize,
    /// Facts.
    pub n_facts: usize,
}

impl PlantedEncoder {
    fn id(&self, word: &str) -> Result<u32> {
        let num = |p: &str| word.strip_prefix(p).and_then(|n| n.parse::<usize>().ok());
        let (t, f) = (self.n_templates, self.n_facts);
        match word {
            "[MASK]" => Ok(kn_core::planted::MASK),
            _ => match (num("t"), num("s"), num("o")) {
                (Some(k), _, _) if k < t => Ok((2 + k) as u32),
                (_, Some(k), _) if k < f => Ok((2 + t + k) as u32),
                (_, _, Some(k)) if k < f => Ok((2 + t + f + k) as u32),
                _ => bail!("'{word}' is not a word of the planted world"),
            },
        }
    }
}

impl Encoder for PlantedEncoder {
    fn queries(&self, sentence: &str, object: &str) -> Result<Vec<Query>> {
        let ids: Vec<u32> = sentence.split_whitespace().map(|w| self.id(w)).collect::<Result<_>>()?;
        let pos = ids
            .iter()
            .position(|&i| i == kn_core::planted::MASK)
            .ok_or_else(|| anyhow!("no [MASK] in {sentence:?}"))?;
        Ok(vec![Query { ids, positions: vec![pos], target_ids: vec![self.id(object)?] }])
    }

    fn object_ids(&self, _sentence: &str, object: &str) -> Result<Vec<u32>> {
        Ok(vec![self.id(object)?])
    }
}

/// Sentences of the planted world for fact `f` (the planted model's own prompts as words).
pub fn planted_sentences<B: burn::tensor::backend::Backend>(
    m: &kn_core::planted::PlantedModel<B>,
    f: usize,
    n: usize,
) -> Vec<String> {
    let dims = m.dims();
    let spec_t = dims.vocab_size - 2 - 2 * m.facts.len();
    m.prompts(f, n)
        .into_iter()
        .map(|(ids, _)| {
            ids.iter()
                .map(|&id| {
                    let id = id as usize;
                    if id == kn_core::planted::MASK as usize {
                        "[MASK]".to_string()
                    } else if id < 2 + spec_t {
                        format!("t{}", id - 2)
                    } else {
                        format!("s{}", id - 2 - spec_t)
                    }
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}
