//! Integrated gradients over the FFN neurons of every layer, batched over the quadrature points.
//!
//! For layer `l`, one forward pass caches every layer's attention output (`resid_mid`) and
//! activations; only layer `l`'s FFN output and the layers above it run on the batch of scaled
//! activations, and the head is evaluated at the target rows only.

use burn::tensor::{activation::log_softmax, backend::AutodiffBackend, Tensor, TensorData};

use crate::attribution::{Attribution, AttributionConfig, Completeness, Method, ObjectiveFn, PieceCombination};
use crate::predict::to_vec;
use crate::query::Query;
use crate::{run_layers, KnError, KnowledgeModel, ModelInput, NoHook, Objective};

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
    cfg.validate()?;
    if queries.is_empty() {
        return Err(KnError::Empty { what: "queries" });
    }
    let dims = model.dims();
    let mut total = vec![vec![0.0f32; dims.d_ff]; dims.n_layers];
    let mut comp_sum: Vec<(f32, f32)> = vec![(0.0, 0.0); dims.n_layers];
    let mut token_probs = Vec::new();
    for q in queries {
        q.check(&dims)?;
        let cached = cache(model, q);
        let last = dims.n_layers - 1;
        let f_full = scalar(objective_tail(model, &cached, last, q, None, cfg))?;
        token_probs.extend(piece_probs(model, &cached, q)?);
        for l in 0..dims.n_layers {
            let a = target_acts(&cached.acts[l], &q.positions);
            let a_host = to_vec(a.clone())?;
            let layer_scores = match cfg.method {
                Method::MaxActivations => sum_positions(&a_host, q.positions.len(), dims.d_ff),
                Method::GradientTimesActivation => {
                    let g = weighted_grads(model, &cached, l, q, &a_host, &[(1.0, 1.0)], cfg)?;
                    times(&a_host, &g, q.positions.len(), dims.d_ff)
                }
                Method::IntegratedGradients => {
                    let points = cfg.quadrature.points(cfg.steps);
                    let mut g = vec![0.0f32; a_host.len()];
                    for chunk in points.chunks(cfg.batch_size) {
                        let gc = weighted_grads(model, &cached, l, q, &a_host, chunk, cfg)?;
                        g.iter_mut().zip(gc).for_each(|(x, y)| *x += y);
                    }
                    let zero = vec![0.0f32; a_host.len()];
                    let f_zero = scalar(objective_tail(
                        model,
                        &cached,
                        l,
                        q,
                        Some(host_tensor(&zero, 1, q, &model.device())),
                        cfg,
                    ))?;
                    comp_sum[l].0 += f_full;
                    comp_sum[l].1 += f_zero;
                    times(&a_host, &g, q.positions.len(), dims.d_ff)
                }
            };
            total[l].iter_mut().zip(layer_scores).for_each(|(t, s)| *t += s);
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

/// Activations at the target positions.
///
/// # Shapes
/// - `act`: `[1, seq, d_ff]`; output: `[1, n_pos, d_ff]`
fn target_acts<B: AutodiffBackend>(act: &Tensor<B, 3>, positions: &[usize]) -> Tensor<B, 3> {
    let d_ff = act.dims()[2];
    let rows: Vec<Tensor<B, 3>> = positions.iter().map(|&p| act.clone().slice([0..1, p..p + 1, 0..d_ff])).collect();
    Tensor::cat(rows, 1)
}

/// `[k, n_pos, d_ff]` from host values of `[n_pos, d_ff]` repeated `k` times.
fn host_tensor<B: AutodiffBackend>(values: &[f32], k: usize, q: &Query, device: &B::Device) -> Tensor<B, 3> {
    let n_pos = q.positions.len();
    let d_ff = values.len() / n_pos;
    let data: Vec<f32> = (0..k).flat_map(|_| values.iter().copied()).collect();
    Tensor::from_data(TensorData::new(data, [k, n_pos, d_ff]), device)
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
    let k = x.as_ref().map_or(1, |x| x.dims()[0]);
    let [_, s, d_ff] = c.acts[l].dims();
    if cfg.reuse_prefix && model.objective() == Objective::CausalLm && q.positions == [s - 1] && s > 1 {
        if let Some(resid) = causal_tail(model, c, l, x.clone(), k) {
            let local = Query { ids: Vec::new(), positions: vec![0], target_ids: q.target_ids.clone() };
            return objective_from_resid(model, resid, &local, cfg);
        }
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
    debug_assert_eq!(resid.dims()[1], s);
    objective_from_resid(model, resid, q, cfg)
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
    let [k, _, d] = resid.dims();
    let rows: Vec<Tensor<B, 3>> = q.positions.iter().map(|&p| resid.clone().slice([0..k, p..p + 1, 0..d])).collect();
    let logits = model.logits(Tensor::cat(rows, 1));
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

/// `Σ_k w_k ∇f(α_k a)` over one batch of quadrature points, `[n_pos * d_ff]` on the host.
fn weighted_grads<B: AutodiffBackend, M: KnowledgeModel<B>>(
    model: &M,
    c: &Cached<B>,
    l: usize,
    q: &Query,
    a: &[f32],
    points: &[(f32, f32)],
    cfg: &AttributionConfig,
) -> Result<Vec<f32>, KnError> {
    let k = points.len();
    let scaled: Vec<f32> = points.iter().flat_map(|&(alpha, _)| a.iter().map(move |v| v * alpha)).collect();
    let n_pos = q.positions.len();
    let device = model.device();
    let x: Tensor<B, 3> =
        Tensor::from_data(TensorData::new(scaled, [k, n_pos, a.len() / n_pos]), &device).require_grad();
    let f = objective_tail(model, c, l, q, Some(x.clone()), cfg);
    let w: Tensor<B, 1> =
        Tensor::from_data(TensorData::new(points.iter().map(|p| p.1).collect::<Vec<f32>>(), [k]), &device);
    let grads = (f * w).sum().backward();
    let g = x.grad(&grads).ok_or_else(|| KnError::Backend("no gradient reached the activations".into()))?;
    let g = to_vec(g.sum_dim(0))?;
    if g.iter().any(|v| !v.is_finite()) {
        return Err(KnError::NonFinite { what: format!("gradients of layer {l}") });
    }
    Ok(g)
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
