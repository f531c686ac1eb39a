//! Integrated gradients over the FFN neurons of every layer, batched over the quadrature points.
//!
//! For layer `l`, one forward pass caches every layer's attention output (`resid_mid`) and
//! activations; only layer `l`'s FFN output and the layers above it run on the batch of scaled
//! activations, and the head is evaluated at the target rows only.

use burn::tensor::{backend::AutodiffBackend, Tensor, TensorData};

use crate::attribution::{Attribution, AttributionConfig, Completeness, Method, ObjectiveFn, PieceCombination};
use crate::predict::to_vec;
use crate::query::Query;
use crate::schedule::run_passes;
use crate::tail::{cache, final_rows, tail_rows, Cached};
use crate::{gather_rows, KnError, KnowledgeModel};

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
/// `queries.len() * n_layers` calls in all, with the layer just finished, on the calling
/// thread, in the order the layers finish.
pub fn attribute_observed<B: AutodiffBackend, M: KnowledgeModel<B>>(
    model: &M,
    queries: &[Query],
    cfg: &AttributionConfig,
    on_layer: &mut dyn FnMut(usize),
) -> Result<Attribution, KnError> {
    attribute_many_observed(model, &[queries], cfg, on_layer)?.pop().ok_or(KnError::Empty { what: "queries" })
}

/// [`attribute`] for several prompts at once (each entry: one query, or the teacher-forced
/// steps of one multi-token target), one [`Attribution`] per prompt, in order.
///
/// Each prompt's scores are exactly those [`attribute`] gives it alone. Doing them together
/// lets the passes of every prompt share one schedule (as many at once as rayon's pool has
/// threads, longest first), so the cores stay busy up to the very end instead of after each
/// prompt.
pub fn attribute_many<B: AutodiffBackend, M: KnowledgeModel<B>>(
    model: &M,
    prompts: &[&[Query]],
    cfg: &AttributionConfig,
) -> Result<Vec<Attribution>, KnError> {
    attribute_many_observed(model, prompts, cfg, &mut |_| {})
}

/// [`attribute_many`], calling `on_layer` after each layer of each query of each prompt, on the
/// calling thread, in the order the layers finish.
pub fn attribute_many_observed<B: AutodiffBackend, M: KnowledgeModel<B>>(
    model: &M,
    prompts: &[&[Query]],
    cfg: &AttributionConfig,
    on_layer: &mut dyn FnMut(usize),
) -> Result<Vec<Attribution>, KnError> {
    attribute_many_cancellable(model, prompts, cfg, on_layer, &|| false)
}

/// [`attribute_many_observed`] that stops with [`KnError::Cancelled`] once `cancelled()` is
/// true: it is asked before each pass starts (on the worker threads; `on_layer`, on the calling
/// thread, may set what it reads), so a cancelled call returns within one pass.
pub fn attribute_many_cancellable<B: AutodiffBackend, M: KnowledgeModel<B>>(
    model: &M,
    prompts: &[&[Query]],
    cfg: &AttributionConfig,
    on_layer: &mut dyn FnMut(usize),
    cancelled: &(dyn Fn() -> bool + Sync),
) -> Result<Vec<Attribution>, KnError> {
    cfg.validate()?;
    model.prepare_gradients();
    if prompts.is_empty() || prompts.iter().any(|p| p.is_empty()) {
        return Err(KnError::Empty { what: "queries" });
    }
    let dims = model.dims();
    let points = match cfg.method {
        Method::IntegratedGradients => cfg.quadrature.points(cfg.steps),
        Method::GradientTimesActivation => vec![(1.0, 1.0)],
        Method::MaxActivations => Vec::new(),
    };
    // The unmodified pass of every query, and the passes each one needs.
    let mut prepared: Vec<Vec<Prepared<B>>> = Vec::with_capacity(prompts.len());
    let mut passes: Vec<PassRef> = Vec::new();
    for (p, queries) in prompts.iter().enumerate() {
        let mut per_query = Vec::with_capacity(queries.len());
        for (qi, q) in queries.iter().enumerate() {
            let prep = prepare(model, q, cfg, points.len())?;
            let rows = tail_rows(model, q, prep.cached.acts[0].dims()[1], cfg);
            for (g, group) in prep.groups.iter().enumerate() {
                let cost = group.iter().map(|&l| rows * (dims.n_layers - l)).sum();
                passes.push(PassRef { prompt: p, query: qi, group: g, cost });
            }
            per_query.push(prep);
        }
        prepared.push(per_query);
    }
    // Longest first: the last passes to start are the shortest, so the threads finish together.
    let mut order: Vec<usize> = (0..passes.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(passes[i].cost));
    let results = run_passes(
        &order,
        model.concurrent_passes(),
        |i| {
            if cancelled() {
                return Err(KnError::Cancelled);
            }
            let r = &passes[i];
            let (prep, q) = (&prepared[r.prompt][r.query], &prompts[r.prompt][r.query]);
            group_pass(model, &prep.cached, &prep.groups[r.group], q, &prep.acts, &points, cfg)
        },
        &mut |i, _| {
            let r = &passes[i];
            prepared[r.prompt][r.query].groups[r.group].iter().for_each(|&l| on_layer(l));
        },
    )?;
    // Combine in prompt, query and layer order: the same sums in the same order as one prompt,
    // one group at a time.
    let mut results = results.into_iter();
    let mut out = Vec::with_capacity(prompts.len());
    for (queries, per_query) in prompts.iter().zip(&prepared) {
        let mut total = vec![vec![0.0f32; dims.d_ff]; dims.n_layers];
        let mut comp_sum: Vec<(f32, f32)> = vec![(0.0, 0.0); dims.n_layers];
        let mut token_probs = Vec::new();
        for (q, prep) in queries.iter().zip(per_query) {
            token_probs.extend_from_slice(&prep.token_probs);
            for group in &prep.groups {
                let pass = results.next().ok_or(KnError::Empty { what: "attribution passes" })?;
                for (i, (&l, g)) in group.iter().zip(&pass.grads).enumerate() {
                    let acts = &prep.acts[l];
                    let layer_scores = match cfg.method {
                        Method::MaxActivations => sum_positions(acts, q.positions.len(), dims.d_ff),
                        Method::GradientTimesActivation => times(acts, g, q.positions.len(), dims.d_ff),
                        Method::IntegratedGradients => {
                            comp_sum[l].0 += prep.f_full;
                            comp_sum[l].1 += pass.f_zero.get(i).copied().ok_or(KnError::Empty { what: "objective" })?;
                            times(acts, g, q.positions.len(), dims.d_ff)
                        }
                    };
                    total[l].iter_mut().zip(layer_scores).for_each(|(t, s)| *t += s);
                }
            }
        }
        out.push(finish(queries, total, comp_sum, token_probs, cfg));
    }
    Ok(out)
}

/// One query's unmodified pass and what its attribution passes start from.
struct Prepared<B: AutodiffBackend> {
    cached: Cached<B>,
    /// Per layer, the activations at the target positions, `[n_pos * d_ff]`.
    acts: Vec<Vec<f32>>,
    /// The unmodified objective.
    f_full: f32,
    /// The unmodified probability of each target piece.
    token_probs: Vec<f32>,
    /// Layer groups, each differentiated in one pass.
    groups: Vec<Vec<usize>>,
}

/// Which pass of which query of which prompt, and its cost in row·block evaluations.
struct PassRef {
    prompt: usize,
    query: usize,
    group: usize,
    cost: usize,
}

/// The unmodified pass of `q` and the layer groups of its attribution.
fn prepare<B: AutodiffBackend, M: KnowledgeModel<B>>(
    model: &M,
    q: &Query,
    cfg: &AttributionConfig,
    n_points: usize,
) -> Result<Prepared<B>, KnError> {
    let dims = model.dims();
    q.check(&dims)?;
    let cached = cache(model, q);
    let base = target_logprobs(model, cached.out.clone(), q);
    let f_full = scalar(objective_of_logprobs(base.clone(), cfg))?;
    let token_probs = to_vec(base.exp())?;
    let acts: Vec<Vec<f32>> = (0..dims.n_layers)
        .map(|l| to_vec(gather_rows(cached.acts[l].clone(), &q.positions)))
        .collect::<Result<_, _>>()?;
    let rows = tail_rows(model, q, cached.acts[0].dims()[1], cfg);
    let groups = layer_groups(dims.n_layers, rows * cfg.batch_size.min(n_points.max(1)), cfg.max_rows_per_pass);
    Ok(Prepared { cached, acts, f_full, token_probs, groups })
}

/// The attribution of one prompt from its summed scores and completeness terms.
fn finish(
    queries: &[Query],
    total: Vec<Vec<f32>>,
    comp_sum: Vec<(f32, f32)>,
    token_probs: Vec<f32>,
    cfg: &AttributionConfig,
) -> Attribution {
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
    Attribution { scores, target_ids, base_prob: token_probs.iter().product(), token_probs, config: *cfg, completeness }
}

/// What one group of layers contributes: per layer, `Σ_k w_k ∇f(α_k a_l)` at the target
/// positions (`[n_pos * d_ff]`), and, for IG, the objective with the layer's activations zeroed.
struct GroupPass {
    grads: Vec<Vec<f32>>,
    f_zero: Vec<f32>,
}

/// The gradient passes of one layer group over every batch of quadrature points, and its
/// baseline pass.
fn group_pass<B: AutodiffBackend, M: KnowledgeModel<B>>(
    model: &M,
    cached: &Cached<B>,
    group: &[usize],
    q: &Query,
    acts: &[Vec<f32>],
    points: &[(f32, f32)],
    cfg: &AttributionConfig,
) -> Result<GroupPass, KnError> {
    let mut grads: Vec<Vec<f32>> = group.iter().map(|&l| vec![0.0f32; acts[l].len()]).collect();
    if cfg.method != Method::MaxActivations {
        for chunk in points.chunks(cfg.batch_size) {
            let gc = weighted_grads(model, cached, group, q, acts, chunk, cfg)?;
            for (g, c) in grads.iter_mut().zip(gc) {
                g.iter_mut().zip(c).for_each(|(x, y)| *x += y);
            }
        }
    }
    // The objective with each layer's activations zeroed (IG's baseline), one pass.
    let f_zero = match cfg.method {
        Method::IntegratedGradients => {
            let d_ff = model.dims().d_ff;
            let zeros = group.iter().map(|_| Tensor::zeros([1, q.positions.len(), d_ff], &model.device())).collect();
            let resid = final_rows(model, cached, group, q, zeros, cfg)?;
            to_vec(objective_from_resid(model, resid, &local(q), cfg))?
        }
        _ => Vec::new(),
    };
    Ok(GroupPass { grads, f_zero })
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

/// `q` with its target rows renumbered `0..n_pos` (the rows [`final_rows`] returns).
fn local(q: &Query) -> Query {
    Query { ids: Vec::new(), positions: (0..q.positions.len()).collect(), target_ids: q.target_ids.clone() }
}

/// `[k]` objective values from the final residual stream.
fn objective_from_resid<B: AutodiffBackend, M: KnowledgeModel<B>>(
    model: &M,
    resid: Tensor<B, 3>,
    q: &Query,
    cfg: &AttributionConfig,
) -> Tensor<B, 1> {
    objective_of_logprobs(target_logprobs(model, resid, q), cfg)
}

/// `[k]` objective values from the log-probabilities of the target pieces, `[k, n_pos]`.
fn objective_of_logprobs<B: AutodiffBackend>(logp: Tensor<B, 2>, cfg: &AttributionConfig) -> Tensor<B, 1> {
    let n = logp.dims()[1];
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
    let logp = model.log_probs(gather_rows(resid, &q.positions));
    let cols: Vec<Tensor<B, 3>> = q
        .target_ids
        .iter()
        .enumerate()
        .map(|(j, &t)| logp.clone().slice([0..k, j..j + 1, t as usize..t as usize + 1]))
        .collect();
    Tensor::cat(cols, 1).squeeze_dim(2)
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
    for &l in layers {
        let a = &acts[l];
        let scaled: Vec<f32> = points.iter().flat_map(|&(alpha, _)| a.iter().map(move |v| v * alpha)).collect();
        let x: Tensor<B, 3> =
            Tensor::from_data(TensorData::new(scaled, [k, n_pos, a.len() / n_pos]), &device).require_grad();
        xs.push(x);
    }
    let f = objective_from_resid(model, final_rows(model, c, layers, q, xs.clone(), cfg)?, &local(q), cfg);
    let weights: Vec<f32> = layers.iter().flat_map(|_| points.iter().map(|p| p.1)).collect();
    let w: Tensor<B, 1> = Tensor::from_data(TensorData::new(weights, [k * layers.len()]), &device);
    let grads = crate::schedule::exclusive_backward(|| (f * w).sum().backward());
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
