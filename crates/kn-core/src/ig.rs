//! Integrated gradients over the FFN neurons of every layer, batched over the quadrature points.
//!
//! For layer `l`, one forward pass caches every layer's attention output (`resid_mid`) and
//! activations; only layer `l`'s FFN output and the layers above it run on the batch of scaled
//! activations, and the head is evaluated at the target rows only.

use burn::tensor::{activation::log_softmax, backend::AutodiffBackend, Tensor, TensorData};

use crate::attribution::{Attribution, AttributionConfig, Completeness, Method, ObjectiveFn, PieceCombination};
use crate::predict::to_vec;
use crate::query::Query;
use crate::{gather_rows, run_layers, KnError, KnowledgeModel, ModelInput, NoHook, Objective};

/// The unmodified pass of one query: per layer, the attention output and the FFN activations.
struct Cached<B: AutodiffBackend> {
    input: ModelInput<B>,
    /// Residual stream entering each layer.
    resids: Vec<Tensor<B, 3>>,
    mids: Vec<Tensor<B, 3>>,
    acts: Vec<Tensor<B, 3>>,
}

/// Scores every FFN neuron for `queries` (one query, or the teacher-forced steps of a causal
/// multi-token target, whose scores are averaged).
pub fn attribute<B: AutodiffBackend, M: KnowledgeModel<B>>(
    model: &M,
    queries: &[Query],
    cfg: &AttributionConfig,
) -> Result<Attribution, KnError> {
    attribute_observed(model, queries, cfg, &mut |_| {})
}

/// [`attribute`], calling `on_layer` after each layer of each query (for progress bars):
/// `queries.len() * n_layers` calls in all, with the layer just finished.
pub fn attribute_observed<B: AutodiffBackend, M: KnowledgeModel<B>>(
    model: &M,
    queries: &[Query],
    cfg: &AttributionConfig,
    on_layer: &mut dyn FnMut(usize),
) -> Result<Attribution, KnError> {
    cfg.validate()?;
    if queries.is_empty() {
        return Err(KnError::Empty { what: "queries" });
    }
    let dims = model.dims();
    let mut total = vec![vec![0.0f32; dims.d_ff]; dims.n_layers];
    let mut comp_sum: Vec<(f32, f32)> = vec![(0.0, 0.0); dims.n_layers];
    let mut token_probs = Vec::new();
    let points = match cfg.method {
        Method::IntegratedGradients => cfg.quadrature.points(cfg.steps),
        Method::GradientTimesActivation => vec![(1.0, 1.0)],
        Method::MaxActivations => Vec::new(),
    };
    for q in queries {
        q.check(&dims)?;
        let cached = cache(model, q);
        let last = dims.n_layers - 1;
        let f_full = scalar(objective_tail(model, &cached, last, q, None, cfg))?;
        token_probs.extend(piece_probs(model, &cached, q)?);
        let acts: Vec<Vec<f32>> = (0..dims.n_layers)
            .map(|l| to_vec(gather_rows(cached.acts[l].clone(), &q.positions)))
            .collect::<Result<_, _>>()?;
        let rows = tail_rows(model, q, cached.acts[0].dims()[1], cfg);
        for group in layer_groups(dims.n_layers, rows * cfg.batch_size.min(points.len().max(1)), cfg.max_rows_per_pass)
        {
            let mut grads: Vec<Vec<f32>> = group.iter().map(|&l| vec![0.0f32; acts[l].len()]).collect();
            if cfg.method != Method::MaxActivations {
                for chunk in points.chunks(cfg.batch_size) {
                    let gc = weighted_grads(model, &cached, &group, q, &acts, chunk, cfg)?;
                    for (g, c) in grads.iter_mut().zip(gc) {
                        g.iter_mut().zip(c).for_each(|(x, y)| *x += y);
                    }
                }
            }
            for (&l, g) in group.iter().zip(&grads) {
                let layer_scores = match cfg.method {
                    Method::MaxActivations => sum_positions(&acts[l], q.positions.len(), dims.d_ff),
                    Method::GradientTimesActivation => times(&acts[l], g, q.positions.len(), dims.d_ff),
                    Method::IntegratedGradients => {
                        let zero = vec![0.0f32; acts[l].len()];
                        let x = host_tensor(&zero, 1, q, &model.device());
                        let f_zero = scalar(objective_tail(model, &cached, l, q, Some(x), cfg))?;
                        comp_sum[l].0 += f_full;
                        comp_sum[l].1 += f_zero;
                        times(&acts[l], g, q.positions.len(), dims.d_ff)
                    }
                };
                total[l].iter_mut().zip(layer_scores).for_each(|(t, s)| *t += s);
                on_layer(l);
            }
        }
    }
    let n = queries.len() as f32;
    let scores: Vec<Vec<f32>> = total.into_iter().map(|row| row.into_iter().map(|s| s / n).collect()).collect();
    let completeness = (cfg.method == Method::IntegratedGradients).then(|| {
        scores
            .iter()
            .zip(&comp_sum)
            .map(|(row, &(full, zero))| {
                let (f_full, f_zero) = (full / n, zero / n);
                let sum_scores: f32 = row.iter().sum();
                Completeness { f_full, f_zero, sum_scores, delta: sum_scores - (f_full - f_zero) }
            })
            .collect()
    });
    let target_ids = queries.iter().flat_map(|q| q.target_ids.iter().copied()).collect();
    Ok(Attribution {
        scores,
        target_ids,
        base_prob: token_probs.iter().product(),
        token_probs,
        config: *cfg,
        completeness,
    })
}

/// The unmodified forward pass, keeping each layer's attention output and activations.
fn cache<B: AutodiffBackend, M: KnowledgeModel<B>>(model: &M, q: &Query) -> Cached<B> {
    let input = ModelInput::from_ids(&q.ids, &model.device());
    let mut resid = model.embed(&input);
    let (mut resids, mut mids, mut acts) = (Vec::new(), Vec::new(), Vec::new());
    for l in 0..model.dims().n_layers {
        resids.push(resid.clone());
        let mid = model.attention_half(l, resid, &input);
        let act = model.ffn_activation(l, mid.clone());
        resid = model.ffn_output(l, mid.clone(), act.clone());
        mids.push(mid);
        acts.push(act);
    }
    Cached { input, resids, mids, acts }
}

/// `[k, n_pos, d_ff]` from host values of `[n_pos, d_ff]` repeated `k` times.
fn host_tensor<B: AutodiffBackend>(values: &[f32], k: usize, q: &Query, device: &B::Device) -> Tensor<B, 3> {
    let n_pos = q.positions.len();
    let d_ff = values.len() / n_pos;
    let data: Vec<f32> = (0..k).flat_map(|_| values.iter().copied()).collect();
    Tensor::from_data(TensorData::new(data, [k, n_pos, d_ff]), device)
}

/// Rows of the residual stream one quadrature point sends through the blocks above a layer:
/// 1 for the causal fast path, the sequence length otherwise.
fn tail_rows<B: AutodiffBackend, M: KnowledgeModel<B>>(
    model: &M,
    q: &Query,
    s: usize,
    cfg: &AttributionConfig,
) -> usize {
    if cfg.reuse_prefix && model.objective() == Objective::CausalLm && q.positions == [s - 1] {
        1
    } else {
        s
    }
}

/// Layers `0..n` in consecutive groups whose tails are differentiated in one backward pass
/// (one head product for the whole group). A group holds at most `budget` row·block
/// evaluations (`rows` per block per layer, layer `l` running `n - l` blocks and the head);
/// a layer over budget on its own forms a group alone.
pub(crate) fn layer_groups(n: usize, rows: usize, budget: usize) -> Vec<Vec<usize>> {
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut used = 0;
    for l in 0..n {
        let cost = rows * (n - l);
        match groups.last_mut() {
            Some(g) if used + cost <= budget => {
                g.push(l);
                used += cost;
            }
            _ => {
                groups.push(vec![l]);
                used = cost;
            }
        }
    }
    groups
}

/// The objective for each row of a batch whose layer-`l` activations at the target positions
/// are replaced by `x` (`None`: unmodified, batch 1).
///
/// # Shapes
/// - `x`: `[k, n_pos, d_ff]`; output: `[k]`
fn objective_tail<B: AutodiffBackend, M: KnowledgeModel<B>>(
    model: &M,
    c: &Cached<B>,
    l: usize,
    q: &Query,
    x: Option<Tensor<B, 3>>,
    cfg: &AttributionConfig,
) -> Tensor<B, 1> {
    objective_from_resid(model, final_rows(model, c, l, q, x, cfg), &local(q), cfg)
}

/// `q` with its target rows renumbered `0..n_pos` (the rows [`final_rows`] returns).
fn local(q: &Query) -> Query {
    Query { ids: Vec::new(), positions: (0..q.positions.len()).collect(), target_ids: q.target_ids.clone() }
}

/// The final residual stream at the target rows, for a batch whose layer-`l` activations at
/// the target positions are replaced by `x` (`None`: unmodified, batch 1).
///
/// With `cfg.reuse_prefix`, only what depends on `x` is computed: causal models run the last
/// position against cached keys and values ([`causal_tail`]), others the target rows of layer
/// `l`'s FFN and of the last block ([`rows_tail`]). Without it, the whole sequence runs (the
/// plain computation the tests compare against).
///
/// # Shapes
/// - `x`: `[k, n_pos, d_ff]`; output: `[k, n_pos, d_model]`
fn final_rows<B: AutodiffBackend, M: KnowledgeModel<B>>(
    model: &M,
    c: &Cached<B>,
    l: usize,
    q: &Query,
    x: Option<Tensor<B, 3>>,
    cfg: &AttributionConfig,
) -> Tensor<B, 3> {
    let k = x.as_ref().map_or(1, |x| x.dims()[0]);
    let [_, s, d_ff] = c.acts[l].dims();
    if cfg.reuse_prefix {
        if tail_rows(model, q, s, cfg) == 1 && s > 1 {
            if let Some(resid) = causal_tail(model, c, l, x.clone(), k) {
                return resid;
            }
        }
        return rows_tail(model, c, l, q, x, k);
    }
    let mut act = c.acts[l].clone();
    let mut mid = c.mids[l].clone();
    if k > 1 {
        act = act.repeat_dim(0, k);
        mid = mid.repeat_dim(0, k);
    }
    if let Some(x) = x {
        for (j, &p) in q.positions.iter().enumerate() {
            act = act.slice_assign([0..k, p..p + 1, 0..d_ff], x.clone().slice([0..k, j..j + 1, 0..d_ff]));
        }
    }
    let resid = model.ffn_output(l, mid, act);
    let resid = run_layers(model, resid, &c.input, l + 1, &mut NoHook);
    gather_rows(resid, &q.positions)
}

/// The final residual stream at the target rows only. Layer `l`'s FFN runs on the target rows
/// (the other rows keep their cached output), the blocks between run on every row, and the
/// last block computes its queries and FFN at the target rows only.
///
/// # Shapes
/// - `x`: `[k, n_pos, d_ff]`; output: `[k, n_pos, d_model]`
fn rows_tail<B: AutodiffBackend, M: KnowledgeModel<B>>(
    model: &M,
    c: &Cached<B>,
    l: usize,
    q: &Query,
    x: Option<Tensor<B, 3>>,
    k: usize,
) -> Tensor<B, 3> {
    let rows = &q.positions;
    let last = c.acts.len() - 1;
    let mut mid = gather_rows(c.mids[l].clone(), rows);
    if k > 1 {
        mid = mid.repeat_dim(0, k);
    }
    let act = x.unwrap_or_else(|| gather_rows(c.acts[l].clone(), rows));
    let out = model.ffn_output(l, mid, act);
    if l == last {
        return out;
    }
    let mut resid = c.resids[l + 1].clone();
    let d = resid.dims()[2];
    if k > 1 {
        resid = resid.repeat_dim(0, k);
    }
    for (j, &p) in rows.iter().enumerate() {
        resid = resid.slice_assign([0..k, p..p + 1, 0..d], out.clone().slice([0..k, j..j + 1, 0..d]));
    }
    for layer in l + 1..last {
        let mid = model.attention_half(layer, resid, &c.input);
        let act = model.ffn_activation(layer, mid.clone());
        resid = model.ffn_output(layer, mid, act);
    }
    let mid = model.attention_half_rows(last, resid, rows, &c.input);
    let act = model.ffn_activation(last, mid.clone());
    model.ffn_output(last, mid, act)
}

/// The final residual stream of the last position only: in a causal model nothing before it
/// depends on it, so layers above `l` run one row per batch entry against the cached keys and
/// values of the prompt. `None` if the model cannot (then the whole sequence runs).
///
/// # Shapes
/// - `x`: `[k, 1, d_ff]`; output: `[k, 1, d_model]`
fn causal_tail<B: AutodiffBackend, M: KnowledgeModel<B>>(
    model: &M,
    c: &Cached<B>,
    l: usize,
    x: Option<Tensor<B, 3>>,
    k: usize,
) -> Option<Tensor<B, 3>> {
    let [_, s, d_ff] = c.acts[l].dims();
    let d = c.mids[l].dims()[2];
    let last = s - 1;
    let mut mid = c.mids[l].clone().slice([0..1, last..s, 0..d]);
    let mut act = c.acts[l].clone().slice([0..1, last..s, 0..d_ff]);
    if k > 1 {
        mid = mid.repeat_dim(0, k);
        act = act.repeat_dim(0, k);
    }
    if let Some(x) = x {
        act = x;
    }
    let mut resid = model.ffn_output(l, mid, act);
    for j in l + 1..c.resids.len() {
        let prefix = c.resids[j].clone().slice([0..1, 0..last, 0..d]);
        let mid = model.attention_half_suffix(j, resid, prefix, &c.input)?;
        let act = model.ffn_activation(j, mid.clone());
        resid = model.ffn_output(j, mid, act);
    }
    Some(resid)
}

/// `[k]` objective values from the final residual stream.
fn objective_from_resid<B: AutodiffBackend, M: KnowledgeModel<B>>(
    model: &M,
    resid: Tensor<B, 3>,
    q: &Query,
    cfg: &AttributionConfig,
) -> Tensor<B, 1> {
    let logp = target_logprobs(model, resid, q);
    let n = q.positions.len();
    match (cfg.objective, cfg.pieces) {
        (ObjectiveFn::Prob, PieceCombination::Joint) => logp.sum_dim(1).exp().squeeze_dim(1),
        (ObjectiveFn::LogProb, PieceCombination::Joint) => logp.sum_dim(1).squeeze_dim(1),
        (ObjectiveFn::Prob, PieceCombination::Mean) => logp.exp().sum_dim(1).squeeze_dim::<1>(1) / n as f64,
        (ObjectiveFn::LogProb, PieceCombination::Mean) => logp.sum_dim(1).squeeze_dim::<1>(1) / n as f64,
    }
}

/// Log-probability of each target piece, `[k, n_pos]`.
fn target_logprobs<B: AutodiffBackend, M: KnowledgeModel<B>>(
    model: &M,
    resid: Tensor<B, 3>,
    q: &Query,
) -> Tensor<B, 2> {
    let k = resid.dims()[0];
    let logits = model.logits(gather_rows(resid, &q.positions));
    let logp = log_softmax(logits, 2);
    let cols: Vec<Tensor<B, 3>> = q
        .target_ids
        .iter()
        .enumerate()
        .map(|(j, &t)| logp.clone().slice([0..k, j..j + 1, t as usize..t as usize + 1]))
        .collect();
    Tensor::cat(cols, 1).squeeze_dim(2)
}

/// Unmodified probability of each piece.
fn piece_probs<B: AutodiffBackend, M: KnowledgeModel<B>>(
    model: &M,
    c: &Cached<B>,
    q: &Query,
) -> Result<Vec<f32>, KnError> {
    let last = c.acts.len() - 1;
    let resid = model.ffn_output(last, c.mids[last].clone(), c.acts[last].clone());
    to_vec(target_logprobs(model, resid, q).exp())
}

/// `Σ_k w_k ∇f(α_k a_l)` over one batch of quadrature points for each layer `l` of `layers`,
/// `[n_pos * d_ff]` per layer on the host. The layers' tails are stacked into one batch for
/// the head and differentiated in one backward pass.
fn weighted_grads<B: AutodiffBackend, M: KnowledgeModel<B>>(
    model: &M,
    c: &Cached<B>,
    layers: &[usize],
    q: &Query,
    acts: &[Vec<f32>],
    points: &[(f32, f32)],
    cfg: &AttributionConfig,
) -> Result<Vec<Vec<f32>>, KnError> {
    let k = points.len();
    let n_pos = q.positions.len();
    let device = model.device();
    let mut xs = Vec::with_capacity(layers.len());
    let mut finals = Vec::with_capacity(layers.len());
    for &l in layers {
        let a = &acts[l];
        let scaled: Vec<f32> = points.iter().flat_map(|&(alpha, _)| a.iter().map(move |v| v * alpha)).collect();
        let x: Tensor<B, 3> =
            Tensor::from_data(TensorData::new(scaled, [k, n_pos, a.len() / n_pos]), &device).require_grad();
        finals.push(final_rows(model, c, l, q, Some(x.clone()), cfg));
        xs.push(x);
    }
    let f = objective_from_resid(model, Tensor::cat(finals, 0), &local(q), cfg);
    let weights: Vec<f32> = layers.iter().flat_map(|_| points.iter().map(|p| p.1)).collect();
    let w: Tensor<B, 1> = Tensor::from_data(TensorData::new(weights, [k * layers.len()]), &device);
    let grads = (f * w).sum().backward();
    layers
        .iter()
        .zip(xs)
        .map(|(&l, x)| {
            let g = x.grad(&grads).ok_or_else(|| KnError::Backend("no gradient reached the activations".into()))?;
            let g = to_vec(g.sum_dim(0))?;
            if g.iter().any(|v| !v.is_finite()) {
                return Err(KnError::NonFinite { what: format!("gradients of layer {l}") });
            }
            Ok(g)
        })
        .collect()
}

/// Reads a one-element tensor.
fn scalar<B: AutodiffBackend>(t: Tensor<B, 1>) -> Result<f32, KnError> {
    to_vec(t)?.first().copied().ok_or(KnError::Empty { what: "objective" })
}

/// `Σ_j a[j, i] · g[j, i]` over target positions `j`.
fn times(a: &[f32], g: &[f32], n_pos: usize, d_ff: usize) -> Vec<f32> {
    (0..d_ff).map(|i| (0..n_pos).map(|j| a[j * d_ff + i] * g[j * d_ff + i]).sum()).collect()
}

/// `Σ_j a[j, i]` over target positions `j`.
fn sum_positions(a: &[f32], n_pos: usize, d_ff: usize) -> Vec<f32> {
    (0..d_ff).map(|i| (0..n_pos).map(|j| a[j * d_ff + i]).sum()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_groups_cover_every_layer_once_within_budget() {
        // 12 layers, 160 rows per block: layer 0 costs 1920 row-blocks.
        let g = layer_groups(12, 160, 4096);
        assert_eq!(g.concat(), (0..12).collect::<Vec<_>>());
        for group in &g {
            let cost: usize = group.iter().map(|l| 160 * (12 - l)).sum();
            assert!(cost <= 4096 || group.len() == 1, "{group:?} costs {cost}");
        }
        assert_eq!(g[0], vec![0, 1]);
        // Causal fast path: 20 rows, all layers in one pass.
        assert_eq!(layer_groups(12, 20, 4096), vec![(0..12).collect::<Vec<_>>()]);
        // A budget below one layer: one layer per group.
        assert_eq!(layer_groups(3, 100, 1).len(), 3);
    }
}
