//! From scores to neurons: coarse neurons per prompt, refined neurons across the prompts of a
//! fact, and removal of neurons shared with other facts.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{Attribution, KnError, NeuronId};

/// Which scores make a neuron "coarse" for a prompt (exactly one rule; kept if `score > t`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Threshold {
    /// `t = ratio × max score` (EAI 0.3, the paper 0.2).
    Adaptive(f32),
    /// A fixed `t`.
    Absolute(f32),
    /// `t` = this percentile (0–100) of all scores, linearly interpolated as numpy does.
    Percentile(f32),
}

impl Threshold {
    /// Rejects ratios outside [0, 1] and percentiles outside [0, 100].
    pub fn validate(self) -> Result<(), KnError> {
        match self {
            Self::Adaptive(r) if !(0.0..=1.0).contains(&r) => {
                Err(KnError::InvalidSetting(format!("adaptive threshold {r} is outside [0, 1]")))
            }
            Self::Percentile(p) if !(0.0..=100.0).contains(&p) => {
                Err(KnError::InvalidSetting(format!("percentile {p} is outside [0, 100]")))
            }
            _ => Ok(()),
        }
    }

    /// The numeric threshold for one attribution.
    pub fn value(self, attr: &Attribution) -> Result<f32, KnError> {
        match self {
            Self::Adaptive(r) => {
                if !(0.0..=1.0).contains(&r) {
                    return Err(KnError::InvalidSetting(format!("adaptive threshold {r} is outside [0, 1]")));
                }
                Ok(attr.max() * r)
            }
            Self::Absolute(t) => Ok(t),
            Self::Percentile(p) => {
                if !(0.0..=100.0).contains(&p) {
                    return Err(KnError::InvalidSetting(format!("percentile {p} is outside [0, 100]")));
                }
                let mut all: Vec<f32> = attr.scores.iter().flatten().copied().collect();
                if all.is_empty() {
                    return Err(KnError::Empty { what: "scores" });
                }
                all.sort_by(f32::total_cmp);
                let rank = p as f64 / 100.0 * (all.len() - 1) as f64;
                let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
                let frac = (rank - lo as f64) as f32;
                Ok(all[lo] + (all[hi] - all[lo]) * frac)
            }
        }
    }
}

/// Neurons scoring strictly above the threshold, in (layer, index) order.
pub fn coarse(attr: &Attribution, t: Threshold) -> Result<Vec<NeuronId>, KnError> {
    let t = t.value(attr)?;
    Ok(attr
        .scores
        .iter()
        .enumerate()
        .flat_map(|(l, row)| row.iter().enumerate().filter(move |(_, &s)| s > t).map(move |(i, _)| NeuronId::new(l, i)))
        .collect())
}

/// How many prompts must share a neuron.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sharing {
    /// Kept if coarse for more than `p · n_prompts` prompts (EAI: 0.5 library, 0.3 PARAREL).
    Fixed(f32),
    /// The paper's rule: start at `start`, move by `step` (down when fewer than `min_neurons`
    /// remain, up when more than `max_neurons`) for at most `rounds` rounds; needs `min_prompts`.
    Adaptive {
        /// Initial p (0.7).
        start: f32,
        /// Adjustment (0.05).
        step: f32,
        /// Rounds (6).
        rounds: usize,
        /// Lower bound on the neuron count (2).
        min_neurons: usize,
        /// Upper bound (5).
        max_neurons: usize,
        /// Fewest prompts (3).
        min_prompts: usize,
    },
}

impl Sharing {
    /// The paper's adaptive rule with its constants.
    pub fn paper() -> Self {
        Self::Adaptive { start: 0.7, step: 0.05, rounds: 6, min_neurons: 2, max_neurons: 5, min_prompts: 3 }
    }
}

/// Refined neurons and how they were obtained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Refined {
    /// The neurons, in (layer, index) order.
    pub neurons: Vec<NeuronId>,
    /// The sharing ratio finally used.
    pub p: f32,
    /// Number of prompts.
    pub n_prompts: usize,
    /// Neurons removed because negative prompts share them.
    pub removed_by_negatives: Vec<NeuronId>,
}

/// Neurons coarse for more than `p · n` of the `n` prompts.
pub fn shared(per_prompt: &[Vec<NeuronId>], p: f32) -> Vec<NeuronId> {
    let t = per_prompt.len() as f32 * p;
    let mut counts: BTreeMap<NeuronId, usize> = BTreeMap::new();
    for set in per_prompt {
        let mut uniq = set.clone();
        uniq.sort();
        uniq.dedup();
        for n in uniq {
            *counts.entry(n).or_default() += 1;
        }
    }
    counts.into_iter().filter(|&(_, c)| c as f32 > t).map(|(n, _)| n).collect()
}

/// Refined neurons of one fact from its prompts' coarse neurons, minus the neurons that are
/// coarse for more than `negative_share · m` of the `m` negative prompts (prompts of other
/// facts; `0.0` removes a neuron coarse for any of them).
pub fn refine(
    per_prompt: &[Vec<NeuronId>],
    sharing: Sharing,
    negatives: &[Vec<NeuronId>],
    negative_share: f32,
) -> Result<Refined, KnError> {
    if per_prompt.is_empty() {
        return Err(KnError::Empty { what: "prompts" });
    }
    let (neurons, p) = match sharing {
        Sharing::Fixed(p) => {
            if !(0.0..1.0).contains(&p) {
                return Err(KnError::InvalidSetting(format!("sharing ratio p = {p} is outside [0, 1)")));
            }
            (shared(per_prompt, p), p)
        }
        Sharing::Adaptive { start, step, rounds, min_neurons, max_neurons, min_prompts } => {
            if per_prompt.len() < min_prompts {
                return Err(KnError::InvalidSetting(format!(
                    "adaptive sharing needs at least {min_prompts} prompts, got {}",
                    per_prompt.len()
                )));
            }
            // p = start + k·step, rounded so that repeated steps do not drift (0.7 − 4·0.05 must
            // be exactly 0.5, or a neuron in exactly half of the prompts slips through).
            let at = |k: i32| ((start as f64 + k as f64 * step as f64) * 1e6).round() as f32 / 1e6;
            let mut k = 0i32;
            let mut found = shared(per_prompt, at(k));
            for _ in 0..rounds {
                if found.len() < min_neurons && at(k - 1) >= 0.0 {
                    k -= 1;
                } else if found.len() > max_neurons && at(k + 1) < 1.0 {
                    k += 1;
                } else {
                    break;
                }
                found = shared(per_prompt, at(k));
            }
            let p = at(k);
            (found, p)
        }
    };
    let banned = if negatives.is_empty() { Vec::new() } else { shared(negatives, negative_share) };
    let (removed, kept): (Vec<NeuronId>, Vec<NeuronId>) = neurons.into_iter().partition(|n| banned.contains(n));
    Ok(Refined { neurons: kept, p, n_prompts: per_prompt.len(), removed_by_negatives: removed })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AttributionConfig;

    fn attr(scores: Vec<Vec<f32>>) -> Attribution {
        Attribution {
            scores,
            target_ids: vec![1],
            base_prob: 0.5,
            token_probs: vec![0.5],
            config: AttributionConfig::default(),
            completeness: None,
        }
    }

    fn n(l: usize, i: usize) -> NeuronId {
        NeuronId::new(l, i)
    }

    #[test]
    fn thresholds_are_strict_and_exclusive() {
        let a = attr(vec![vec![0.1, 1.0], vec![0.3, 0.31]]);
        assert_eq!(coarse(&a, Threshold::Adaptive(0.3)).unwrap(), vec![n(0, 1), n(1, 1)]);
        assert_eq!(coarse(&a, Threshold::Absolute(0.3)).unwrap(), vec![n(0, 1), n(1, 1)]);
        // numpy.percentile([0.1, 0.3, 0.31, 1.0], 50) = 0.305
        assert_eq!(coarse(&a, Threshold::Percentile(50.0)).unwrap(), vec![n(0, 1), n(1, 1)]);
        assert!(coarse(&a, Threshold::Adaptive(1.5)).is_err());
    }

    #[test]
    fn sharing_counts_prompts_strictly_above_p_n() {
        let sets = vec![vec![n(0, 1), n(1, 2)], vec![n(0, 1)], vec![n(0, 1), n(1, 2)], vec![n(2, 0)]];
        assert_eq!(shared(&sets, 0.5), vec![n(0, 1)]);
        assert_eq!(shared(&sets, 0.4), vec![n(0, 1), n(1, 2)]);
    }

    #[test]
    fn negatives_really_remove_shared_neurons() {
        let sets = vec![vec![n(0, 1), n(1, 2)]; 3];
        let r = refine(&sets, Sharing::Fixed(0.5), &[vec![n(1, 2)]], 0.0).unwrap();
        assert_eq!(r.neurons, vec![n(0, 1)]);
        assert_eq!(r.removed_by_negatives, vec![n(1, 2)]);
    }

    #[test]
    fn adaptive_sharing_lowers_p_until_enough_neurons() {
        // 10 prompts; neuron A in 6, B in 5, C in 4: p = 0.7 keeps none, 0.55 keeps A, 0.45 keeps A, B.
        let mut sets = vec![Vec::new(); 10];
        for (k, s) in sets.iter_mut().enumerate() {
            if k < 6 {
                s.push(n(0, 0));
            }
            if k < 5 {
                s.push(n(0, 1));
            }
            if k < 4 {
                s.push(n(0, 2));
            }
        }
        let r = refine(&sets, Sharing::paper(), &[], 0.0).unwrap();
        assert_eq!(r.neurons, vec![n(0, 0), n(0, 1)]);
        assert!((r.p - 0.45).abs() < 1e-6, "{}", r.p);
        assert!(refine(&sets[..2], Sharing::paper(), &[], 0.0).is_err());
    }
}
