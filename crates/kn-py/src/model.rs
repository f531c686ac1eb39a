//! `Model`: a loaded checkpoint (any architecture kn-models loads) with the operations the
//! Python layer exposes, and `Undo`, the handle that restores weights after `erase` / `edit`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use kn_core::{
    activation_signs, attribute_many_cancellable, coarse, edit_signed, erase, measure, refine, Attribution,
    AttributionConfig, Effect, Fill, KnowledgeModel, NeuronId, NoHook, Outcome, Query, ScaleNeurons, WeightUndo,
};
use kn_models::prompt::{prompt_queries, MultiToken, PromptQueries};
use kn_models::{load_model, HubOptions, LoadOptions, ModelBundle};
use pyo3::prelude::*;
use serde_json::{json, Value};

use crate::errors::{self, PromptError};
use crate::options;

/// The backend the cargo features chose, with autodiff.
type B = kn_models::backend::AutodiffBackend;

/// A loaded model and its tokenizer.
#[pyclass(module = "knowledge_neurons_rs._native")]
pub struct Model {
    bundle: ModelBundle<B>,
    name: String,
}

/// Loads `name_or_path` (a folder, a `.gguf` file or a Hub name) on `device`.
#[pyfunction]
#[pyo3(signature = (name_or_path, device = "default", offline = false, tokenizer = None, ignore_prefix = Vec::new()))]
pub fn load(
    py: Python<'_>,
    name_or_path: &str,
    device: &str,
    offline: bool,
    tokenizer: Option<PathBuf>,
    ignore_prefix: Vec<String>,
) -> PyResult<Model> {
    let dev = kn_models::backend::device(device).map_err(errors::ModelLoadError::new_err)?;
    let opts = LoadOptions {
        hub: HubOptions { offline, ..Default::default() },
        ignore_prefixes: ignore_prefix,
        tokenizer_dir: tokenizer,
    };
    let bundle = py.detach(|| load_model::<B>(name_or_path, &opts, &dev)).map_err(errors::load)?;
    if bundle.tokenizer.is_none() {
        return Err(errors::ModelLoadError::new_err(format!(
            "{name_or_path} has no tokenizer files (tokenizer.json, vocab.txt or vocab.json + merges.txt): pass tokenizer=DIR"
        )));
    }
    Ok(Model { bundle, name: name_or_path.to_string() })
}

impl Model {
    fn queries(&self, prompt: &str, target: &str, raw_target: bool) -> PyResult<PromptQueries> {
        let tok = self.bundle.tokenizer.as_ref().ok_or_else(|| PromptError::new_err("the model has no tokenizer"))?;
        let m = &self.bundle.model;
        prompt_queries(tok, &m.dims(), m.objective(), prompt, target, MultiToken::Expand, raw_target)
            .map_err(|e| PromptError::new_err(format!("prompt {prompt:?}, target {target:?}: {e}")))
    }

    /// Attributes each prompt's queries with the GIL released, checking for Ctrl-C after each pass.
    fn attribute(&self, py: Python<'_>, all: &[&[Query]], cfg: &AttributionConfig) -> PyResult<Vec<Attribution>> {
        let stop = AtomicBool::new(false);
        let model = &self.bundle.model;
        py.detach(|| {
            attribute_many_cancellable(
                model,
                all,
                cfg,
                &mut |_| {
                    if Python::attach(|py| py.check_signals().is_err()) {
                        stop.store(true, Ordering::Relaxed);
                    }
                },
                &|| stop.load(Ordering::Relaxed),
            )
        })
        .map_err(errors::core)
    }

    fn outcome(&self, o: &Outcome) -> Value {
        let completion = self.bundle.tokenizer.as_ref().map(|t| t.decode(&o.argmax_ids));
        json!({"gt_prob": o.gt_prob, "argmax_completion": completion, "argmax_prob": o.argmax_prob, "argmax_ids": o.argmax_ids})
    }

    fn effect(&self, e: &Effect) -> Value {
        json!({"before": self.outcome(&e.before), "after": self.outcome(&e.after), "relative_change": e.relative_change()})
    }
}

fn neuron_ids(neurons: &[(usize, usize)]) -> Vec<NeuronId> {
    neurons.iter().map(|&(l, i)| NeuronId::new(l, i)).collect()
}

#[pymethods]
impl Model {
    /// The name or path it was loaded from.
    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    /// config.json's `model_type` (`bert`, `gpt2`, `gpt_neo`, `llama`, `mistral`, `qwen2`).
    #[getter]
    fn model_type(&self) -> &'static str {
        self.bundle.config.arch.model_type()
    }

    /// `"masked"` or `"causal"`.
    #[getter]
    fn objective(&self) -> &'static str {
        match self.bundle.model.objective() {
            kn_core::Objective::MaskedLm => "masked",
            kn_core::Objective::CausalLm => "causal",
        }
    }

    /// Number of transformer blocks.
    #[getter]
    fn n_layers(&self) -> usize {
        self.bundle.model.dims().n_layers
    }

    /// FFN neurons per block.
    #[getter]
    fn d_ff(&self) -> usize {
        self.bundle.model.dims().d_ff
    }

    /// Attribution scores of each `(prompt, target)`: per pair, float32 bytes of
    /// `[n_layers, d_ff]` and the metadata (target tokens, probabilities, completeness) as JSON.
    ///
    /// # Shapes
    /// - each bytes value: `n_layers * d_ff` little-endian float32, row-major
    fn scores(
        &self,
        py: Python<'_>,
        pairs: Vec<(String, String)>,
        options: options::Attr,
    ) -> PyResult<Vec<(Vec<u8>, String)>> {
        let cfg = options.config()?;
        let raw_target = options.raw_target;
        let qs = pairs.iter().map(|(p, t)| self.queries(p, t, raw_target)).collect::<PyResult<Vec<_>>>()?;
        let all: Vec<&[Query]> = qs.iter().map(|q| q.queries.as_slice()).collect();
        let attrs = self.attribute(py, &all, &cfg)?;
        let tok = self.bundle.tokenizer.as_ref();
        Ok(attrs
            .iter()
            .zip(&qs)
            .map(|(a, q)| {
                let bytes: Vec<u8> = a.scores.iter().flatten().flat_map(|x| x.to_le_bytes()).collect();
                let tokens: Vec<String> =
                    q.target_ids.iter().map(|&i| tok.map(|t| t.decode(&[i])).unwrap_or_default()).collect();
                let meta = json!({
                    "target_ids": q.target_ids,
                    "target_tokens": tokens,
                    "base_prob": a.base_prob,
                    "token_probs": a.token_probs,
                    "completeness": a.completeness,
                    "prompt": q.prompt,
                });
                (bytes, meta.to_string())
            })
            .collect())
    }

    /// Coarse neurons of each prompt, then the refined ones (shared by more than `p` of the
    /// prompts) minus those coarse for the negative examples' prompts, as JSON.
    #[pyo3(signature = (prompts, target, negatives, threshold, adaptive_threshold, percentile, p, adaptive_p, negative_share, options))]
    #[allow(clippy::too_many_arguments)]
    fn refined(
        &self,
        py: Python<'_>,
        prompts: Vec<String>,
        target: &str,
        negatives: Vec<(String, String)>,
        threshold: Option<f32>,
        adaptive_threshold: Option<f32>,
        percentile: Option<f32>,
        p: f32,
        adaptive_p: bool,
        negative_share: f32,
        options: options::Attr,
    ) -> PyResult<String> {
        let cfg = options.config()?;
        let raw_target = options.raw_target;
        let rule = options::threshold(threshold, adaptive_threshold, percentile)?;
        let sharing = options::sharing(p, adaptive_p)?;
        if prompts.is_empty() {
            return Err(PromptError::new_err("no prompts: refined neurons need at least one prompt"));
        }
        let mut qs = prompts.iter().map(|pr| self.queries(pr, target, raw_target)).collect::<PyResult<Vec<_>>>()?;
        let n_pos = qs.len();
        for (pr, t) in &negatives {
            qs.push(self.queries(pr, t, raw_target)?);
        }
        let all: Vec<&[Query]> = qs.iter().map(|q| q.queries.as_slice()).collect();
        let attrs = self.attribute(py, &all, &cfg)?;
        let sets = attrs.iter().map(|a| coarse(a, rule)).collect::<Result<Vec<_>, _>>().map_err(errors::core)?;
        let (pos, neg) = sets.split_at(n_pos);
        let refined = refine(pos, sharing, neg, negative_share).map_err(errors::core)?;
        Ok(json!({
            "neurons": refined.neurons,
            "p": refined.p,
            "n_prompts": refined.n_prompts,
            "removed_by_negatives": refined.removed_by_negatives,
            "coarse": pos,
        })
        .to_string())
    }

    /// Scales `neurons`' activations by `factor` at the target position (0 suppresses) and
    /// measures the prediction before and after, as JSON.
    #[pyo3(signature = (prompt, target, neurons, factor, raw_target))]
    fn patch(
        &self,
        py: Python<'_>,
        prompt: &str,
        target: &str,
        neurons: Vec<(usize, usize)>,
        factor: f32,
        raw_target: bool,
    ) -> PyResult<String> {
        let q = self.queries(prompt, target, raw_target)?;
        let ids = neuron_ids(&neurons);
        let model = &self.bundle.model;
        let effect = py
            .detach(|| {
                let scope = kn_core::intervene::target_scope(model.objective(), &q.queries);
                let mut patch = ScaleNeurons::new(&ids, &model.dims(), factor, scope)?;
                kn_core::intervene::patch_effect(model, &q.queries, &mut patch)
            })
            .map_err(errors::core)?;
        Ok(self.effect(&effect).to_string())
    }

    /// Sets `neurons`' value vectors to zero (`fill = "zero"`) or to the unknown token's
    /// embedding (`"unk"`) and measures `target` before and after. Returns the JSON and the
    /// undo handle (`None` when `undo` restored the weights already).
    #[pyo3(signature = (prompt, target, neurons, fill, undo, raw_target))]
    fn erase(
        mut slf: PyRefMut<'_, Self>,
        prompt: &str,
        target: &str,
        neurons: Vec<(usize, usize)>,
        fill: &str,
        undo: bool,
        raw_target: bool,
    ) -> PyResult<(String, Option<Undo>)> {
        let py = slf.py();
        let q = slf.queries(prompt, target, raw_target)?;
        let fill = match fill {
            "zero" => Fill::Zero,
            "unk" => {
                let tok = slf.bundle.tokenizer.as_ref().ok_or_else(|| PromptError::new_err("no tokenizer"))?;
                let (_, id) = tok.unk_token().ok_or_else(|| {
                    errors::SettingError::new_err("the tokenizer declares no unknown token: erase with \"zero\"")
                })?;
                Fill::Token(id)
            }
            f => return Err(errors::SettingError::new_err(format!("erase_value {f:?} is not one of zero, unk"))),
        };
        let ids = neuron_ids(&neurons);
        let model = &mut slf.bundle.model;
        let (effect, handle) = py
            .detach(|| -> Result<_, kn_core::KnError> {
                let before = measure(model, &q.queries, &mut NoHook)?;
                let handle = erase(model, &ids, fill)?;
                let after = measure(model, &q.queries, &mut NoHook)?;
                Ok((Effect { before, after }, handle))
            })
            .map_err(errors::core)?;
        let text = slf.effect(&effect).to_string();
        finish(slf, text, handle, undo)
    }

    /// Moves `neurons`' value vectors from the current argmax (or `old_target`) to `target`
    /// (one token each), signed by each neuron's activation, with the Python library's rule
    /// (`"eai"`, λ = 2) or the paper's (`"paper"`). Returns the JSON and the undo handle.
    #[pyo3(signature = (prompt, target, neurons, rule, old_target, undo, raw_target))]
    #[allow(clippy::too_many_arguments)]
    fn edit(
        mut slf: PyRefMut<'_, Self>,
        prompt: &str,
        target: &str,
        neurons: Vec<(usize, usize)>,
        rule: &str,
        old_target: Option<String>,
        undo: bool,
        raw_target: bool,
    ) -> PyResult<(String, Option<Undo>)> {
        let py = slf.py();
        let rule = options::edit_rule(rule)?;
        let new = slf.queries(prompt, target, raw_target)?;
        let old = match &old_target {
            Some(t) => Some(slf.queries(prompt, t, raw_target)?),
            None => None,
        };
        if new.target_ids.len() != 1 || old.as_ref().is_some_and(|o| o.target_ids.len() != 1) {
            return Err(PromptError::new_err(format!(
                "edit needs one-token targets; {target:?} is {} tokens",
                new.target_ids.len()
            )));
        }
        let ids = neuron_ids(&neurons);
        let model = &mut slf.bundle.model;
        let (before, after, new_before, new_after, signs, from, handle) = py
            .detach(|| -> Result<_, kn_core::KnError> {
                let reference = old.as_ref().unwrap_or(&new);
                let before = measure(model, &reference.queries, &mut NoHook)?;
                let new_before = measure(model, &new.queries, &mut NoHook)?;
                let from = match &old {
                    Some(o) => o.target_ids[0],
                    None => before.argmax_ids.first().copied().ok_or(kn_core::KnError::Empty { what: "prediction" })?,
                };
                let signs = activation_signs(model, &new.queries[0], &ids)?;
                let handle = edit_signed(model, &ids, &signs, from, new.target_ids[0], rule)?;
                let after = measure(model, &reference.queries, &mut NoHook)?;
                let new_after = measure(model, &new.queries, &mut NoHook)?;
                Ok((before, after, new_before, new_after, signs, from, handle))
            })
            .map_err(errors::core)?;
        let mut v = slf.effect(&Effect { before, after });
        v["new_target"] = json!({"target": target, "prob_before": new_before.gt_prob, "prob_after": new_after.gt_prob,
            "argmax_after": slf.outcome(&new_after)["argmax_completion"]});
        v["from_id"] = json!(from);
        v["activation_signs"] = json!(signs);
        finish(slf, v.to_string(), handle, undo)
    }

    /// One PARAREL fact evaluated as `kn-pararel run` does (refined neurons; suppression and
    /// enhancement on its prompts and on `unrelated`'s; the activation baseline). `fact` and
    /// `unrelated` are PARAREL records as JSON (`{sentences, relation_name, obj_label}`).
    /// Returns (our record, the Python library's `pararel_evaluate.py` entry), as JSON.
    #[pyo3(signature = (uuid, fact, unrelated, paper, steps, batch_size, multi_token))]
    #[allow(clippy::too_many_arguments)]
    fn pararel_fact(
        &self,
        py: Python<'_>,
        uuid: &str,
        fact: &str,
        unrelated: Option<(String, String)>,
        paper: bool,
        steps: usize,
        batch_size: usize,
        multi_token: bool,
    ) -> PyResult<(String, String)> {
        let parse = |text: &str| -> PyResult<kn_pararel::dataset::Fact> {
            serde_json::from_str(text).map_err(|e| {
                PromptError::new_err(format!("not a PARAREL fact {{sentences, relation_name, obj_label}}: {e}"))
            })
        };
        let f = parse(fact)?;
        let other = match &unrelated {
            Some((id, text)) => Some((id.as_str(), parse(text)?)),
            None => None,
        };
        let mut cfg =
            if paper { kn_pararel::evaluate::EvalConfig::paper() } else { kn_pararel::evaluate::EvalConfig::default() };
        cfg.attribution.steps = steps;
        cfg.attribution.batch_size = batch_size;
        cfg.attribution.validate().map_err(errors::core)?;
        cfg.skip_multi_token = !multi_token;
        let tok = self.bundle.tokenizer.as_ref().ok_or_else(|| PromptError::new_err("the model has no tokenizer"))?;
        let m = &self.bundle.model;
        let enc = kn_pararel::encode::TextEncoder { tok, dims: m.dims(), objective: m.objective() };
        let r = py
            .detach(|| kn_pararel::evaluate::evaluate(m, &enc, uuid, &f, other.as_ref().map(|(i, o)| (*i, o)), &cfg))
            .map_err(|e| errors::KnError::new_err(format!("{e:#}")))?;
        let ours = serde_json::to_string(&r).map_err(|e| errors::KnError::new_err(e.to_string()))?;
        Ok((ours, kn_pararel::export::eai_record(&r).to_string()))
    }

    /// The bit patterns of block `layer`'s FFN output weight (row `i`: neuron `i`'s value
    /// vector), to check that an undo restored it.
    fn ffn_out_weight_bits(&self, layer: usize) -> PyResult<Vec<u32>> {
        let n = self.bundle.model.dims().n_layers;
        if layer >= n {
            return Err(errors::NeuronError::new_err(format!(
                "layer {layer} is out of range: the model has {n} layers"
            )));
        }
        let w = kn_core::predict::to_vec(self.bundle.model.ffn_out_weight(layer)).map_err(errors::core)?;
        Ok(w.iter().map(|x| x.to_bits()).collect())
    }
}

/// Undoes at once (`undo`), or hands the change's undo to Python.
fn finish(
    mut slf: PyRefMut<'_, Model>,
    text: String,
    handle: WeightUndo<B>,
    undo: bool,
) -> PyResult<(String, Option<Undo>)> {
    if undo {
        handle.undo(&mut slf.bundle.model);
        return Ok((text, None));
    }
    let model: Py<Model> = slf.into();
    Ok((text, Some(Undo { model, handle: Some(handle) })))
}

/// Restores the weights an `erase` / `edit` changed, bit for bit; calling it again does nothing.
#[pyclass(module = "knowledge_neurons_rs._native")]
pub struct Undo {
    model: Py<Model>,
    handle: Option<WeightUndo<B>>,
}

#[pymethods]
impl Undo {
    fn __call__(&mut self, py: Python<'_>) -> PyResult<()> {
        if let Some(h) = self.handle.take() {
            let mut m = self.model.borrow_mut(py);
            h.undo(&mut m.bundle.model);
        }
        Ok(())
    }

    /// Whether the change is still in place.
    #[getter]
    fn pending(&self) -> bool {
        self.handle.is_some()
    }
}
