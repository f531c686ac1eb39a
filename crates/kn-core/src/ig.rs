//! Integrated gradients over the FFN neurons of every layer, batched over the quadrature points.
//!
//! For layer `l`, one forward pass caches every layer's attention output (`resid_mid`) and
//! activations; only layer `l`'s FFN output and the layers above it run on the batch of scaled
//! activations, and the head is evaluated at the target rows only. A quadrature point `α = 1`
//! (the activations themselves) is the same point for every layer: layer 0's tail gives it to
//! every layer above, whose tails skip it (`weighted_grads`).

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
    // The unmodified pass of every query.
    let prepared: Vec<Vec<Prepared<B>>> = prompts
        .iter()
        .map(|queries| queries.iter().map(|q| prepare(model, q, cfg)).collect::<Result<Vec<_>, _>>())
        .collect::<Result<_, _>>()?;
    // Queries stacked into passes (each alone unless `max_stacked_prompts` > 1), and the
    // passes of each stack: one per layer group.
    let stacks: Vec<Stack<B>> = stacks_of(prompts, cfg.max_stacked_prompts)
        .into_iter()
        .map(|members| {
            let (p0, q0) = members[0];
            let q = &prompts[p0][q0];
            let cached = (members.len() > 1)
                .then(|| Cached::stack(&members.iter().map(|&(p, qi)| &prepared[p][qi].cached).collect::<Vec<_>>()));
            let rows = tail_rows(model, &q.positions, q.ids.len(), cfg) * members.len();
            let groups =
                layer_groups(dims.n_layers, rows * cfg.batch_size.min(points.len().max(1)), cfg.max_rows_per_pass);
            Stack { members, cached, groups, rows }
        })
        .collect();
    // The point `α = 1` (the activations themselves) is the same for every layer: layer 0's tail
    // gives it to the layers above (`weighted_grads`), which skip it.
    let at_one = cfg.reuse_prefix && cfg.method != Method::MaxActivations && points.iter().any(|p| p.0 == 1.0);
    let mut passes: Vec<PassRef> = Vec::new();
    for (si, st) in stacks.iter().enumerate() {
        for (g, group) in st.groups.iter().enumerate() {
            let cost = group.iter().map(|&l| st.rows * (dims.n_layers - l)).sum();
            passes.push(PassRef { stack: si, group: g, cost });
        }
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
            let st = &stacks[r.stack];
            let (p0, q0) = st.members[0];
            let cached = st.cached.as_ref().unwrap_or(&prepared[p0][q0].cached);
            let targets: Vec<&[u32]> = st.members.iter().map(|&(p, qi)| prompts[p][qi].target_ids.as_slice()).collect();
            let acts: Vec<&[Vec<f32>]> = st.members.iter().map(|&(p, qi)| prepared[p][qi].acts.as_slice()).collect();
            let q = &prompts[p0][q0];
            group_pass(model, cached, &st.groups[r.group], &q.positions, &targets, &acts, &points, at_one, cfg)
        },
        &mut |i, _| {
            let st = &stacks[passes[i].stack];
            for &l in &st.groups[passes[i].group] {
                st.members.iter().for_each(|_| on_layer(l));
            }
        },
    )?;
    // Each pass's gradients and baseline objectives, handed to their queries by layer.
    let mut per_layer: Vec<Vec<Vec<Option<LayerPass>>>> =
        prompts.iter().map(|qs| qs.iter().map(|_| (0..dims.n_layers).map(|_| None).collect()).collect()).collect();
    let mut above = Vec::new();
    for (mut pass, r) in results.into_iter().zip(&passes) {
        let st = &stacks[r.stack];
        above.push((r.stack, std::mem::take(&mut pass.above)));
        let f_zeros = pass.f_zero_or_none();
        for ((&l, grads), f_zero) in st.groups[r.group].iter().zip(pass.grads).zip(f_zeros) {
            for ((&(p, qi), grad), f) in st.members.iter().zip(grads).zip(f_zero) {
                if let Some(slot) = per_layer.get_mut(p).and_then(|v| v.get_mut(qi)).and_then(|v| v.get_mut(l)) {
                    *slot = Some(LayerPass { grad, f_zero: f });
                }
            }
        }
    }
    // Layer 0's tails' gradients at `α = 1` for the layers above, in pass order.
    for (stack, per_layer_above) in above {
        let st = &stacks[stack];
        for (l, per_query) in per_layer_above {
            for (&(p, qi), g) in st.members.iter().zip(per_query) {
                let slot = per_layer.get_mut(p).and_then(|v| v.get_mut(qi)).and_then(|v| v.get_mut(l));
                if let Some(Some(pass)) = slot {
                    pass.grad.iter_mut().zip(g).for_each(|(x, y)| *x += y);
                }
            }
        }
    }
    // Combine in prompt, query and layer order: the same sums in the same order as one prompt,
    // one layer at a time.
    let mut out = Vec::with_capacity(prompts.len());
    for ((queries, per_query), layers_of) in prompts.iter().zip(&prepared).zip(per_layer) {
        let mut total = vec![vec![0.0f32; dims.d_ff]; dims.n_layers];
        let mut comp_sum: Vec<(f32, f32)> = vec![(0.0, 0.0); dims.n_layers];
        let mut token_probs = Vec::new();
        for ((q, prep), layers) in queries.iter().zip(per_query).zip(layers_of) {
            token_probs.extend_from_slice(&prep.token_probs);
            for (l, pass) in layers.into_iter().enumerate() {
                let pass = pass.ok_or(KnError::Empty { what: "attribution passes" })?;
                let acts = &prep.acts[l];
                let layer_scores = match cfg.method {
                    Method::MaxActivations => sum_positions(acts, q.positions.len(), dims.d_ff),
                    Method::GradientTimesActivation => times(acts, &pass.grad, q.positions.len(), dims.d_ff),
                    Method::IntegratedGradients => {
                        comp_sum[l].0 += prep.f_full;
                        comp_sum[l].1 += pass.f_zero.ok_or(KnError::Empty { what: "objective" })?;
                        times(acts, &pass.grad, q.positions.len(), dims.d_ff)
                    }
                };
                total[l].iter_mut().zip(layer_scores).for_each(|(t, s)| *t += s);
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
}

/// Queries whose passes run as one batch, and the layer groups they are differentiated in.
struct Stack<B: AutodiffBackend> {
    /// `(prompt, query)` of each member, in batch order.
    members: Vec<(usize, usize)>,
    /// The members' unmodified passes stacked; `None` for a single member (its own is used).
    cached: Option<Cached<B>>,
    /// Layer groups, each differentiated in one pass.
    groups: Vec<Vec<usize>>,
    /// Residual rows one quadrature point sends through the upper blocks, all members together.
    rows: usize,
}

/// Which pass of which stack, and its cost in row·block evaluations.
struct PassRef {
    stack: usize,
    group: usize,
    cost: usize,
}

/// What one layer's pass gives one query.
struct LayerPass {
    /// `Σ_k w_k ∇f(α_k a_l)` at the target positions, `[n_pos * d_ff]`.
    grad: Vec<f32>,
    /// The objective with the layer's activations zeroed (IG only).
    f_zero: Option<f32>,
}

/// The queries of `prompts` in stacks of at most `max` that share their length, target
/// positions and number of targets (what the stacked tails need to run as one batch), in the
/// order the queries come: each stack is a list of `(prompt, query)`.
pub(crate) fn stacks_of(prompts: &[&[Query]], max: usize) -> Vec<Vec<(usize, usize)>> {
    let mut stacks: Vec<Vec<(usize, usize)>> = Vec::new();
    let mut open: std::collections::HashMap<(usize, &[usize], usize), usize> = std::collections::HashMap::new();
    for (p, queries) in prompts.iter().enumerate() {
        for (qi, q) in queries.iter().enumerate() {
            let key = (q.ids.len(), q.positions.as_slice(), q.target_ids.len());
            match open.get(&key).copied() {
                Some(si) if stacks[si].len() < max => stacks[si].push((p, qi)),
                _ => {
                    open.insert(key, stacks.len());
                    stacks.push(vec![(p, qi)]);
                }
            }
        }
    }
    stacks
}

/// The unmodified pass of `q`.
fn prepare<B: AutodiffBackend, M: KnowledgeModel<B>>(
    model: &M,
    q: &Query,
    cfg: &AttributionConfig,
) -> Result<Prepared<B>, KnError> {
    let dims = model.dims();
    q.check(&dims)?;
    let cached = cache(model, q);
    let base = target_logprobs(model, cached.out.clone(), &q.positions, &[&q.target_ids]);
    let f_full = scalar(objective_of_logprobs(base.clone(), cfg))?;
    let token_probs = to_vec(base.exp())?;
    let acts: Vec<Vec<f32>> = (0..dims.n_layers)
        .map(|l| to_vec(gather_rows(cached.acts[l].clone(), &q.positions)))
        .collect::<Result<_, _>>()?;
    Ok(Prepared { cached, acts, f_full, token_probs })
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

/// Per layer and stacked query, a vector (`[layer][query][..]`).
type LayerQueryVecs = Vec<Vec<Vec<f32>>>;

/// What one group of layers contributes to each stacked query: per layer and query,
/// `Σ_k w_k ∇f(α_k a_l)` at the target positions (`[n_pos * d_ff]`), and, for IG, the
/// objective with the layer's activations zeroed.
struct GroupPass {
    /// `[layer of the group][query of the stack]`.
    grads: Vec<Vec<Vec<f32>>>,
    /// `[layer of the group][query of the stack]`; empty unless IG.
    f_zero: Vec<Vec<f32>>,
    /// `(layer, [query of the stack])`: layers above 0's gradient at `α = 1`, from layer 0's
    /// tail when this group has it (see [`weighted_grads`]).
    above: Vec<(usize, Vec<Vec<f32>>)>,
}

impl GroupPass {
    /// Per layer of the group, each query's baseline objective (`None` without one).
    fn f_zero_or_none(&self) -> Vec<Vec<Option<f32>>> {
        self.grads
            .iter()
            .enumerate()
            .map(|(i, g)| (0..g.len()).map(|m| self.f_zero.get(i).and_then(|f| f.get(m)).copied()).collect())
            .collect()
    }
}

/// The gradient passes of one layer group over every batch of quadrature points, and its
/// baseline pass, for the queries stacked in `c` (their targets and activations in batch
/// order; one query unless stacked). With `at_one`, layers above 0 skip the points `α = 1`,
/// which layer 0's tail gives them ([`weighted_grads`]).
#[allow(clippy::too_many_arguments)]
fn group_pass<B: AutodiffBackend, M: KnowledgeModel<B>>(
    model: &M,
    c: &Cached<B>,
    group: &[usize],
    positions: &[usize],
    targets: &[&[u32]],
    acts: &[&[Vec<f32>]],
    points: &[(f32, f32)],
    at_one: bool,
    cfg: &AttributionConfig,
) -> Result<GroupPass, KnError> {
    let mut grads = zero_grads(group, acts);
    // The objective at a quadrature point `α = 0` (the default rule's first point) is IG's
    // baseline objective: taken from the gradient pass, it needs no pass of its own.
    let mut f_at_zero: Vec<Option<Vec<f32>>> = vec![None; group.len()];
    let mut above: Vec<(usize, Vec<Vec<f32>>)> = Vec::new();
    if cfg.method != Method::MaxActivations {
        for chunk in points.chunks(cfg.batch_size) {
            let part = weighted_grads(model, c, group, positions, targets, acts, chunk, at_one, cfg)?;
            for (slot, f0) in f_at_zero.iter_mut().zip(part.f_zero) {
                if slot.is_none() {
                    *slot = f0;
                }
            }
            add_into(&mut grads, part.grads);
            for (j, g) in part.at_one {
                match above.iter_mut().find(|(l, _)| *l == j) {
                    Some((_, sum)) => add_into(std::slice::from_mut(sum), vec![g]),
                    None => above.push((j, g)),
                }
            }
        }
    }
    // The objective with each layer's activations zeroed (IG's baseline), one pass when no
    // quadrature point gave it.
    let f_zero = match cfg.method {
        Method::IntegratedGradients if f_at_zero.iter().all(Option::is_some) => {
            f_at_zero.into_iter().flatten().collect()
        }
        Method::IntegratedGradients => {
            let d_ff = model.dims().d_ff;
            let n = acts.len();
            let zeros = group.iter().map(|_| Tensor::zeros([n, positions.len(), d_ff], &model.device())).collect();
            let (resid, _) = final_rows(model, c, group, positions, zeros, None, cfg)?;
            let f = to_vec(objective_from_resid(model, resid, &local(positions), targets, cfg))?;
            f.chunks(n.max(1)).map(<[f32]>::to_vec).collect()
        }
        _ => Vec::new(),
    };
    Ok(GroupPass { grads, f_zero, above })
}

/// Zeros shaped like the gradients of `layers` for each stacked query (`[layer][query][n_pos * d_ff]`).
fn zero_grads(layers: &[usize], acts: &[&[Vec<f32>]]) -> LayerQueryVecs {
    layers.iter().map(|&l| acts.iter().map(|a| vec![0.0f32; a[l].len()]).collect()).collect()
}

/// `sum[i][m] += part[i][m]`, element-wise.
fn add_into(sum: &mut [Vec<Vec<f32>>], part: Vec<Vec<Vec<f32>>>) {
    for (per_query, p) in sum.iter_mut().zip(part) {
        for (g, p) in per_query.iter_mut().zip(p) {
            g.iter_mut().zip(p).for_each(|(x, y)| *x += y);
        }
    }
}

/// Layers `0..n` in groups whose tails are differentiated in one backward pass (one head
/// product for the whole group), each group ascending. A group holds at most `budget` row·block
/// evaluations (`rows` per block per layer, layer `l` running `n - l` blocks and the head); a
/// layer over budget on its own forms a group alone.
///
/// The groups are as few as the budget allows and as equal in cost as the layers make them
/// (longest layer first into the cheapest group): a deep layer's short tail joins a shallow
/// layer's long one, so every pass ends in a head product of several layers' rows (20 rows of
/// a 30,522-column head run at half the kernel's speed, 60 at four fifths) and concurrent
/// passes finish together.
pub(crate) fn layer_groups(n: usize, rows: usize, budget: usize) -> Vec<Vec<usize>> {
    let cost = |l: usize| rows.saturating_mul(n - l);
    let total = (0..n).map(cost).fold(0usize, usize::saturating_add);
    let mut count = total.div_ceil(budget.max(1)).clamp(1, n.max(1));
    loop {
        // Layers in descending cost (ascending index), each into the cheapest group so far
        // (the first of equals).
        let mut groups: Vec<(usize, Vec<usize>)> = vec![(0, Vec::new()); count];
        for l in 0..n {
            if let Some(g) = groups.iter_mut().min_by_key(|g| g.0) {
                g.0 = g.0.saturating_add(cost(l));
                g.1.push(l);
            }
        }
        let fits = groups.iter().all(|(c, g)| *c <= budget || g.len() == 1);
        if fits || count >= n {
            return groups.into_iter().map(|(_, g)| g).filter(|g| !g.is_empty()).collect();
        }
        count += 1;
    }
}

/// The target rows renumbered `0..n_pos` (the rows [`final_rows`] returns).
fn local(positions: &[usize]) -> Vec<usize> {
    (0..positions.len()).collect()
}

/// `[k]` objective values from the final residual stream; batch row `b` has the targets
/// `targets[b % targets.len()]`.
fn objective_from_resid<B: AutodiffBackend, M: KnowledgeModel<B>>(
    model: &M,
    resid: Tensor<B, 3>,
    positions: &[usize],
    targets: &[&[u32]],
    cfg: &AttributionConfig,
) -> Tensor<B, 1> {
    objective_of_logprobs(target_logprobs(model, resid, positions, targets), cfg)
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

/// Log-probability of each target piece at `positions`, `[k, n_pos]`: batch row `b` reads the
/// ids `targets[b % targets.len()]` (one id per position).
fn target_logprobs<B: AutodiffBackend, M: KnowledgeModel<B>>(
    model: &M,
    resid: Tensor<B, 3>,
    positions: &[usize],
    targets: &[&[u32]],
) -> Tensor<B, 2> {
    let k = resid.dims()[0];
    // Row j of batch entry b (stacked queries: query b % P) at its own target.
    let n_pos = positions.len();
    let p = targets.len().max(1);
    let ids: Vec<u32> = (0..k)
        .flat_map(|b| (0..n_pos).map(move |j| targets.get(b % p).and_then(|t| t.get(j)).copied().unwrap_or(0)))
        .collect();
    model.log_probs_at(gather_rows(resid, positions), &ids)
}

/// What one batch of quadrature points gives a layer group.
struct ChunkGrads {
    /// Per layer of the group and stacked query, `Σ_k w_k ∇f(α_k a_l)` over the layer's points
    /// of the batch, `[n_pos * d_ff]` (zeros for a layer with none).
    grads: LayerQueryVecs,
    /// Per layer of the group, each query's objective at the point `α = 0` (IG's baseline
    /// objective, the activations zeroed), if the layer's points of the batch have it.
    f_zero: Vec<Option<Vec<f32>>>,
    /// `(layer, [query][n_pos * d_ff])`: the weighted gradient at `α = 1` of each layer above
    /// 0, from layer 0's tail.
    at_one: Vec<(usize, Vec<Vec<f32>>)>,
}

/// `Σ_k w_k ∇f(α_k a_l)` over one batch of quadrature points for each layer `l` of `layers`
/// and each stacked query, on the host, and the objective at a point `α = 0`. The layers'
/// tails are stacked into one batch for the head and differentiated in one backward pass;
/// within a layer's part of the batch, row `i·P + m` is point `i` of query `m`.
///
/// With `at_one`, the point `α = 1` (the activations themselves) is the same point for every
/// layer: layers above 0 skip it, and layer 0's tail, where it is the unmodified pass, gives
/// their gradients there through [`final_rows`]' probe (zero leaves added to every block's
/// activations in that point's rows), so no other tail runs it.
#[allow(clippy::too_many_arguments)]
fn weighted_grads<B: AutodiffBackend, M: KnowledgeModel<B>>(
    model: &M,
    c: &Cached<B>,
    layers: &[usize],
    positions: &[usize],
    targets: &[&[u32]],
    acts: &[&[Vec<f32>]],
    points: &[(f32, f32)],
    at_one: bool,
    cfg: &AttributionConfig,
) -> Result<ChunkGrads, KnError> {
    let n = acts.len();
    let n_pos = positions.len();
    let device = model.device();
    let mut out = ChunkGrads { grads: zero_grads(layers, acts), f_zero: vec![None; layers.len()], at_one: Vec::new() };
    // Each layer's points, and the layers (indices into `layers`) that have any.
    let own: Vec<Vec<(f32, f32)>> = layers
        .iter()
        .map(|&l| points.iter().copied().filter(|p| !(at_one && l != 0 && p.0 == 1.0)).collect())
        .collect();
    let kept: Vec<usize> = (0..layers.len()).filter(|&i| !own[i].is_empty()).collect();
    let Some(&first) = kept.first() else {
        return Ok(out);
    };
    let probe = (at_one && layers[first] == 0)
        .then(|| own[first].iter().position(|p| p.0 == 1.0).map(|i| i * n..(i + 1) * n))
        .flatten();
    let mut xs = Vec::with_capacity(kept.len());
    for &i in &kept {
        let l = layers[i];
        let width = acts.first().map_or(0, |a| a[l].len());
        let scaled: Vec<f32> = own[i]
            .iter()
            .flat_map(|&(alpha, _)| acts.iter().flat_map(move |a| a[l].iter().map(move |v| v * alpha)))
            .collect();
        let x: Tensor<B, 3> =
            Tensor::from_data(TensorData::new(scaled, [own[i].len() * n, n_pos, width / n_pos]), &device)
                .require_grad();
        xs.push(x);
    }
    let kept_layers: Vec<usize> = kept.iter().map(|&i| layers[i]).collect();
    let (resid, leaves) = final_rows(model, c, &kept_layers, positions, xs.clone(), probe, cfg)?;
    let f = objective_from_resid(model, resid, &local(positions), targets, cfg);
    // `0 · a` is the zero baseline for finite activations; were one not finite, neither would
    // the gradients be, and the pass fails on them below.
    if kept.iter().any(|&i| own[i].iter().any(|p| p.0 == 0.0)) {
        let values = to_vec(f.clone())?;
        let mut offset = 0;
        for &i in &kept {
            if let Some(z) = own[i].iter().position(|p| p.0 == 0.0) {
                out.f_zero[i] =
                    Some((0..n).map(|m| values.get(offset + z * n + m).copied().unwrap_or(f32::NAN)).collect());
            }
            offset += own[i].len() * n;
        }
    }
    let weights: Vec<f32> =
        kept.iter().flat_map(|&i| own[i].iter().flat_map(|p| std::iter::repeat_n(p.1, n))).collect();
    let total = weights.len();
    let w: Tensor<B, 1> = Tensor::from_data(TensorData::new(weights, [total]), &device);
    let grads = crate::schedule::exclusive_backward(|| (f * w).sum().backward());
    let per_query = |l: usize, g: Option<Tensor<B::InnerBackend, 3>>| -> Result<Vec<Vec<f32>>, KnError> {
        let g = g.ok_or_else(|| KnError::Backend("no gradient reached the activations".into()))?;
        let [rows, positions, width] = g.dims();
        let k = rows / n.max(1);
        let per_query: Vec<Vec<f32>> = if n == 1 {
            vec![to_vec(g.sum_dim(0))?]
        } else {
            let summed = to_vec(g.reshape([k, n, positions * width]).sum_dim(0))?;
            summed.chunks(positions * width).map(<[f32]>::to_vec).collect()
        };
        if per_query.iter().flatten().any(|v| !v.is_finite()) {
            return Err(KnError::NonFinite { what: format!("gradients of layer {l}") });
        }
        Ok(per_query)
    };
    for (&i, x) in kept.iter().zip(xs) {
        out.grads[i] = per_query(layers[i], x.grad(&grads))?;
    }
    for (j, leaf) in leaves {
        out.at_one.push((j, per_query(j, leaf.grad(&grads))?));
    }
    Ok(out)
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
        // 12 layers, 160 rows per block: layer 0 costs 1920 row-blocks, all 12480.
        let g = layer_groups(12, 160, 4096);
        let mut all = g.concat();
        all.sort_unstable();
        assert_eq!(all, (0..12).collect::<Vec<_>>());
        let cost = |group: &[usize]| group.iter().map(|l| 160 * (12 - l)).sum::<usize>();
        for group in &g {
            assert!(group.windows(2).all(|w| w[0] < w[1]), "{group:?} ascends");
            assert!(cost(group) <= 4096 || group.len() == 1, "{group:?} costs {}", cost(group));
        }
        // As few groups as the budget allows (12480 / 4096 → 4), shallow and deep layers
        // together, costs as equal as the layers make them.
        assert_eq!(g, vec![vec![0, 7, 8], vec![1, 6, 9], vec![2, 5, 10], vec![3, 4, 11]]);
        assert_eq!(g.iter().map(|x| cost(x)).collect::<Vec<_>>(), vec![3360, 3200, 3040, 2880]);
        // Causal fast path: 20 rows, all layers in one pass.
        assert_eq!(layer_groups(12, 20, 4096), vec![(0..12).collect::<Vec<_>>()]);
        // A budget below one layer: one layer per group.
        assert_eq!(layer_groups(3, 100, 1), vec![vec![0], vec![1], vec![2]]);
        // Four groups over budget, five fit: the count grows until every group fits.
        let g = layer_groups(12, 320, 6400);
        assert!(g.iter().all(|x| 320 * x.iter().map(|l| 12 - l).sum::<usize>() <= 6400), "{g:?}");
        assert_eq!(g.len(), 5, "{g:?}");
        assert!(layer_groups(0, 20, 4096).is_empty());
    }

    #[test]
    fn queries_stack_when_length_positions_and_targets_agree() {
        let q = |n: usize, pos: usize, targets: usize| Query {
            ids: vec![1; n],
            positions: (pos..pos + targets).collect(),
            target_ids: vec![2; targets],
        };
        let a = [q(5, 2, 1), q(6, 2, 1)];
        let b = [q(5, 2, 1)];
        let c = [q(5, 3, 1), q(5, 2, 1), q(5, 2, 2)];
        let prompts: Vec<&[Query]> = vec![&a, &b, &c];
        assert_eq!(
            stacks_of(&prompts, 8),
            vec![vec![(0, 0), (1, 0), (2, 1)], vec![(0, 1)], vec![(2, 0)], vec![(2, 2)]]
        );
        // At most `max` per stack, in order; 1 stacks nothing.
        assert_eq!(stacks_of(&prompts, 2)[..2], [vec![(0, 0), (1, 0)], vec![(0, 1)]]);
        assert!(stacks_of(&prompts, 1).iter().all(|s| s.len() == 1));
        assert_eq!(stacks_of(&prompts, 1).len(), 6);
    }
}
