//! What one attribution or intervention is about: a token sequence, where the target is read,
//! and which token(s) it should be.

use serde::{Deserialize, Serialize};

use crate::{KnError, ModelDims, Objective};

/// One prediction problem: at `positions[j]` the model should predict `target_ids[j]`. Several
/// positions are a multi-piece target of a masked LM (one `[MASK]` per piece), scored jointly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Query {
    /// Input token ids.
    pub ids: Vec<u32>,
    /// Positions where targets are predicted.
    pub positions: Vec<usize>,
    /// Target id at each position.
    pub target_ids: Vec<u32>,
}

impl Query {
    /// The queries for a prompt and a target of one or more tokens.
    ///
    /// - Masked LM: `mask_positions` holds one `[MASK]` per target piece; one joint query.
    /// - Causal LM: one query per target token, teacher-forced: token `i` is predicted after the
    ///   prompt and target tokens `0..i` (the Python library crashes here).
    pub fn for_target(
        objective: Objective,
        dims: &ModelDims,
        prompt_ids: &[u32],
        mask_positions: &[usize],
        target_ids: &[u32],
    ) -> Result<Vec<Query>, KnError> {
        if target_ids.is_empty() {
            return Err(KnError::Empty { what: "target" });
        }
        if prompt_ids.is_empty() {
            return Err(KnError::Empty { what: "prompt" });
        }
        if let Some(&id) = target_ids.iter().chain(prompt_ids).find(|&&id| id as usize >= dims.vocab_size) {
            return Err(KnError::TokenOutOfRange { id, vocab: dims.vocab_size });
        }
        let queries = match objective {
            Objective::MaskedLm => {
                if mask_positions.len() != target_ids.len() {
                    return Err(KnError::InvalidSetting(format!(
                        "{} mask positions for a target of {} pieces",
                        mask_positions.len(),
                        target_ids.len()
                    )));
                }
                vec![Query {
                    ids: prompt_ids.to_vec(),
                    positions: mask_positions.to_vec(),
                    target_ids: target_ids.to_vec(),
                }]
            }
            Objective::CausalLm => (0..target_ids.len())
                .map(|i| {
                    let mut ids = prompt_ids.to_vec();
                    ids.extend_from_slice(&target_ids[..i]);
                    Query { positions: vec![ids.len() - 1], ids, target_ids: vec![target_ids[i]] }
                })
                .collect(),
        };
        for q in &queries {
            q.check(dims)?;
        }
        Ok(queries)
    }

    /// Checks token ids, positions and length against the model.
    pub fn check(&self, dims: &ModelDims) -> Result<(), KnError> {
        if let Some(&id) = self.target_ids.iter().chain(&self.ids).find(|&&id| id as usize >= dims.vocab_size) {
            return Err(KnError::TokenOutOfRange { id, vocab: dims.vocab_size });
        }
        if self.ids.len() > dims.max_positions {
            return Err(KnError::InvalidSetting(format!(
                "the input has {} tokens; the model accepts at most {}",
                self.ids.len(),
                dims.max_positions
            )));
        }
        if let Some(&pos) = self.positions.iter().find(|&&p| p >= self.ids.len()) {
            return Err(KnError::PositionOutOfRange { pos, seq_len: self.ids.len() });
        }
        if self.positions.is_empty() || self.positions.len() != self.target_ids.len() {
            return Err(KnError::InvalidSetting("a query needs one target id per position".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIMS: ModelDims = ModelDims { n_layers: 1, d_model: 4, d_ff: 8, vocab_size: 50, max_positions: 16 };

    #[test]
    fn causal_targets_are_teacher_forced() {
        let q = Query::for_target(Objective::CausalLm, &DIMS, &[1, 2, 3], &[], &[7, 8]).unwrap();
        assert_eq!(q.len(), 2);
        assert_eq!(q[1].ids, vec![1, 2, 3, 7]);
        assert_eq!((q[1].positions[0], q[1].target_ids[0]), (3, 8));
    }

    #[test]
    fn masked_targets_need_one_mask_per_piece() {
        assert!(Query::for_target(Objective::MaskedLm, &DIMS, &[1, 4, 4, 2], &[1], &[7, 8]).is_err());
        let q = Query::for_target(Objective::MaskedLm, &DIMS, &[1, 4, 4, 2], &[1, 2], &[7, 8]).unwrap();
        assert_eq!(q.len(), 1);
        assert!(Query::for_target(Objective::MaskedLm, &DIMS, &[1, 4], &[1], &[70]).is_err());
    }
}
