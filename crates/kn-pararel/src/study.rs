//! What the paper's two case studies (section 5: updating facts, erasing relations) share:
//! reading a finished run's refined neurons per relation, the relation filter, seeded picks,
//! scoring a fact's prompts (probability, rank and argmax of its object) in one batch pass, and
//! checking that an undo restored the weights bit for bit.

use std::collections::BTreeMap;

use anyhow::{bail, Result};
use burn::tensor::backend::Backend;
use kn_core::predict::to_vec;
use kn_core::{probs_batch, KnowledgeModel, NeuronId, Query, WeightUndo};
use serde::{Deserialize, Serialize};

use crate::dataset::{Dataset, Fact};
use crate::encode::Encoder;
use crate::evaluate::FactResult;

/// A run's evaluated facts (not skipped) grouped by relation, in id order.
pub fn by_relation(results: &[FactResult]) -> BTreeMap<String, Vec<&FactResult>> {
    let mut m: BTreeMap<String, Vec<&FactResult>> = BTreeMap::new();
    for r in results.iter().filter(|r| r.skipped.is_none()) {
        m.entry(r.relation_name.clone()).or_default().push(r);
    }
    m.values_mut().for_each(|v| v.sort_by(|a, b| a.uuid.cmp(&b.uuid)));
    m
}

/// How many of `facts` have each neuron among their refined neurons, most frequent first
/// (ties: lower neuron first).
pub fn neuron_counts(facts: &[&FactResult]) -> Vec<(NeuronId, usize)> {
    let mut c: BTreeMap<NeuronId, usize> = BTreeMap::new();
    for f in facts {
        let mut own = f.neurons.clone();
        own.sort();
        own.dedup();
        for n in own {
            *c.entry(n).or_default() += 1;
        }
    }
    let mut v: Vec<(NeuronId, usize)> = c.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    v
}

/// The paper's relation filter (`select_kn`): the neurons refined for more than `share` (0.1) of
/// the relation's facts, which express the relation rather than the fact.
pub fn common_neurons(facts: &[&FactResult], share: f64) -> Vec<NeuronId> {
    let limit = facts.len() as f64 * share;
    let mut v: Vec<NeuronId> =
        neuron_counts(facts).into_iter().filter(|(_, c)| *c as f64 > limit).map(|(n, _)| n).collect();
    v.sort();
    v
}

/// A deterministic generator per (seed, key): every shard and every restart picks the same.
pub fn rng_for(seed: u64, key: &str) -> kn_core::planted::Lcg {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
    for b in key.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    kn_core::planted::Lcg(h)
}

/// `k` distinct items of `items` picked by `rng` (all of them, shuffled, when fewer).
pub fn pick<'a, T>(items: &'a [T], k: usize, rng: &mut kn_core::planted::Lcg) -> Vec<&'a T> {
    let mut idx: Vec<usize> = (0..items.len()).collect();
    for i in (1..idx.len()).rev() {
        let j = ((rng.uniform() * (i + 1) as f32) as usize).min(i);
        idx.swap(i, j);
    }
    idx.into_iter().take(k).map(|i| &items[i]).collect()
}

/// The model's view of one prompt's answer.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Scored {
    /// Probability of the object.
    pub prob: f32,
    /// Its rank among the next-token predictions (0: the argmax).
    pub rank: usize,
    /// The argmax token.
    pub argmax: u32,
}

/// The one-token query of `sentence` answered by `object`, or why there is none.
pub fn one_token_query(enc: &dyn Encoder, sentence: &str, object: &str) -> Result<Query> {
    let q = enc.queries(sentence, object)?;
    match q.as_slice() {
        [one] if one.positions.len() == 1 && one.target_ids.len() == 1 => Ok(one.clone()),
        _ => bail!("object {object:?} is not one token after {sentence:?}"),
    }
}

/// Scores `queries` (one-token) in one padded batch pass, not counting the tokens `allowed`
/// ([`scored_in_row`]).
pub fn score<B: Backend, M: KnowledgeModel<B>>(model: &M, queries: &[Query], allowed: &[u32]) -> Result<Vec<Scored>> {
    let refs: Vec<&Query> = queries.iter().collect();
    Ok(probs_batch(model, &refs, None)?
        .iter()
        .zip(queries)
        .map(|(row, q)| scored_in_row(row, q.target_ids[0], allowed))
        .collect())
}

/// Token `t`'s probability in a softmax row, its rank and the row's argmax, the tokens
/// `allowed` (articles, say: the known filter's `--allow-before`) not counted: the rank is
/// among the other tokens and the argmax is the most probable other token. With nothing
/// allowed, the plain rank and argmax.
pub fn scored_in_row(row: &[f32], t: u32, allowed: &[u32]) -> Scored {
    let (prob, rank) = prob_and_rank(row, t as usize);
    let free = allowed.iter().filter(|&&a| a != t && row.get(a as usize).is_some_and(|&x| x > prob)).count();
    let top = kn_core::predict::top_k_of(row, allowed.len() + 1);
    let argmax = top.iter().find(|p| !allowed.contains(&p.id)).map_or(0, |p| p.id);
    Scored { prob, rank: rank - free, argmax }
}

/// The token ids of `words` as the object slot of the fact set's first prompt sees them (" the"
/// for byte-level BPE); a word of several tokens is an error (it could never outrank alone).
pub fn allowed_ids(enc: &dyn Encoder, data: &Dataset, words: &[String]) -> Result<Vec<u32>> {
    let Some(first) = data.values().find_map(|f| f.sentences.first()) else { return Ok(Vec::new()) };
    words
        .iter()
        .map(|w| match enc.object_ids(first, w)?.as_slice() {
            [id] => Ok(*id),
            ids => bail!("--allow-before {w:?} is {} tokens after {first:?}, not one", ids.len()),
        })
        .collect()
}

/// The probability of token `t` in a softmax row and its rank (how many tokens are more
/// probable; 0: the argmax). A token past the row has probability 0.
pub fn prob_and_rank(row: &[f32], t: usize) -> (f32, usize) {
    let prob = row.get(t).copied().unwrap_or(0.0);
    (prob, row.iter().filter(|&&x| x > prob).count())
}

/// Every prompt of each fact as a one-token query of its object (facts whose object is not one
/// token on some prompt are left out).
pub fn fact_queries(enc: &dyn Encoder, facts: &[(&str, &Fact)]) -> Vec<Query> {
    facts
        .iter()
        .flat_map(|(_, f)| f.sentences.iter().filter_map(|s| one_token_query(enc, s, &f.obj_label).ok()))
        .collect()
}

/// Accuracy (argmax = object) and perplexity measures of a set of prompts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Quality {
    /// Prompts.
    pub n_prompts: usize,
    /// Fraction whose argmax is the object.
    pub accuracy: f64,
    /// Mean over prompts of `−log p(object)` (the paper's log-perplexity of the gold object).
    pub log_ppl: f64,
    /// `exp(log_ppl)` (the paper's PPL of the erasing study).
    pub ppl: f64,
}

/// [`Quality`] of scored prompts.
pub fn quality(queries: &[Query], scored: &[Scored]) -> Quality {
    let n = scored.len();
    if n == 0 {
        return Quality::default();
    }
    let correct = scored.iter().zip(queries).filter(|(s, q)| s.argmax == q.target_ids[0]).count();
    // A probability that underflowed to 0 counts as the smallest positive f32.
    let nll: f64 = scored.iter().map(|s| -f64::from(s.prob.max(f32::MIN_POSITIVE)).ln()).sum::<f64>() / n as f64;
    Quality { n_prompts: n, accuracy: correct as f64 / n as f64, log_ppl: nll, ppl: nll.exp() }
}

/// The FFN output weights of `layers`, bit patterns (to check an undo).
pub fn weight_bits<B: Backend, M: KnowledgeModel<B>>(model: &M, layers: &[usize]) -> Result<Vec<Vec<u32>>> {
    layers.iter().map(|&l| Ok(to_vec(model.ffn_out_weight(l))?.iter().map(|x| x.to_bits()).collect())).collect()
}

/// [`weight_bits`] of the layers a change of `neurons` touches (sorted, each once: the layers
/// its `WeightUndo` will list), taken before the change.
pub fn bits_before_change<B: Backend, M: KnowledgeModel<B>>(model: &M, neurons: &[NeuronId]) -> Result<Vec<Vec<u32>>> {
    let mut layers: Vec<usize> = neurons.iter().map(|n| n.layer).collect();
    layers.sort_unstable();
    layers.dedup();
    weight_bits(model, &layers)
}

/// Undoes `undo` and says whether the touched layers' weights are bit for bit `before`
/// (from [`weight_bits`] on `undo.layers()` before the change).
pub fn undo_restores<B: Backend, M: KnowledgeModel<B>>(
    model: &mut M,
    undo: WeightUndo<B>,
    before: &[Vec<u32>],
) -> Result<bool> {
    let layers = undo.layers();
    undo.undo(model);
    Ok(weight_bits(model, &layers)? == before)
}

/// The facts of `data` behind a run's records, in the records' order (records whose fact is
/// not in `data` are an error: the run was made from another fact set).
pub fn facts_of<'a>(data: &'a Dataset, records: &[&'a FactResult]) -> Result<Vec<(&'a str, &'a Fact)>> {
    records
        .iter()
        .map(|r| match data.get_key_value(&r.uuid) {
            Some((k, f)) => Ok((k.as_str(), f)),
            None => bail!("fact {} of the run is not in the fact set (was the run made from another one?)", r.uuid),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowed_tokens_do_not_count_above_the_object() {
        // Token 2 (" the") first, the object 4 second, token 0 third.
        let row = [0.15, 0.05, 0.5, 0.0, 0.3];
        assert_eq!(scored_in_row(&row, 4, &[]), Scored { prob: 0.3, rank: 1, argmax: 2 });
        assert_eq!(scored_in_row(&row, 4, &[2]), Scored { prob: 0.3, rank: 0, argmax: 4 });
        // An allowed token below the object changes nothing; an allowed object is still scored
        // (its rank among the others), and the argmax skips every allowed token.
        assert_eq!(scored_in_row(&row, 2, &[1]), Scored { prob: 0.5, rank: 0, argmax: 2 });
        assert_eq!(scored_in_row(&row, 0, &[2, 0]), Scored { prob: 0.15, rank: 1, argmax: 4 });
    }
}
