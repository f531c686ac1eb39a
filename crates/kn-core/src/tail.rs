//! The part of the forward pass that depends on one layer's FFN activations (the "tail"), for
//! several layers at once.
//!
//! Integrated gradients replaces layer `l`'s activations at the target positions by scaled
//! copies and needs the final residual stream at the target rows. Everything below layer `l`
//! is cached once per query ([`Cached`]); what runs per batch is layer `l`'s FFN output and the
//! blocks above it. The tails of a group of layers run as one wavefront: block `j` runs once
//! on the stacked rows of every tail that started below `j`, so each weight matrix is
//! read once per group instead of once per layer, and the products are tall enough to run at
//! the matrix kernel's speed.

use std::ops::Range;

use burn::tensor::{backend::AutodiffBackend, Tensor};

use crate::attribution::AttributionConfig;
use crate::query::Query;
use crate::{gather_rows, run_layers, KnError, KnowledgeModel, ModelInput, NoHook, Objective};

/// The unmodified pass of one query: per layer, the residual stream entering it, its
/// attention output and its FFN activations.
pub(crate) struct Cached<B: AutodiffBackend> {
    pub(crate) input: ModelInput<B>,
    /// Residual stream entering each layer, `[1, seq, d_model]`.
    pub(crate) resids: Vec<Tensor<B, 3>>,
    /// Each layer's attention output (`resid_mid`), `[1, seq, d_model]`.
    pub(crate) mids: Vec<Tensor<B, 3>>,
    /// Each layer's FFN activations, `[1, seq, d_ff]`.
    pub(crate) acts: Vec<Tensor<B, 3>>,
    /// The final residual stream, `[1, seq, d_model]`.
    pub(crate) out: Tensor<B, 3>,
}

impl<B: AutodiffBackend> Cached<B> {
    /// The unmodified passes of several queries of one length (none padded), stacked along the
    /// batch axis in the order given: the tails of a stacked pass start from it.
    ///
    /// # Shapes
    /// - each `parts[i]` has batch 1; the output has batch `parts.len()`
    pub(crate) fn stack(parts: &[&Cached<B>]) -> Cached<B> {
        let cat3 = |f: &dyn Fn(&Cached<B>) -> Tensor<B, 3>| Tensor::cat(parts.iter().map(|c| f(c)).collect(), 0);
        let per_layer = |f: &dyn Fn(&Cached<B>) -> &Vec<Tensor<B, 3>>| {
            let n = parts.first().map_or(0, |c| f(c).len());
            (0..n).map(|l| cat3(&|c| f(c)[l].clone())).collect()
        };
        let ids = Tensor::cat(parts.iter().map(|c| c.input.input_ids.clone()).collect(), 0);
        Cached {
            input: ModelInput { input_ids: ids, token_type_ids: None, attention_mask: None },
            resids: per_layer(&|c| &c.resids),
            mids: per_layer(&|c| &c.mids),
            acts: per_layer(&|c| &c.acts),
            out: cat3(&|c| c.out.clone()),
        }
    }
}

/// Runs the unmodified forward pass of `q`, keeping what the tails start from.
pub(crate) fn cache<B: AutodiffBackend, M: KnowledgeModel<B>>(model: &M, q: &Query) -> Cached<B> {
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
    Cached { input, resids, mids, acts, out: resid }
}

/// Rows of the residual stream one quadrature point sends through the blocks above a layer:
/// 1 for the causal fast path, the sequence length otherwise.
pub(crate) fn tail_rows<B: AutodiffBackend, M: KnowledgeModel<B>>(
    model: &M,
    positions: &[usize],
    s: usize,
    cfg: &AttributionConfig,
) -> usize {
    if cfg.reuse_prefix && model.objective() == Objective::CausalLm && positions == [s - 1] {
        1
    } else {
        s
    }
}

/// The final residual stream at the target rows for each layer of `layers` (ascending, gaps
/// allowed) with its activations at the target positions replaced by the matching `xs`
/// entry, stacked along the batch axis in `layers` order.
///
/// `c` may stack `P` queries ([`Cached::stack`]) of one length and target `positions`: then
/// batch row `b` of each `xs` entry (and of the output, per layer) belongs to query `b % P`.
///
/// With `cfg.reuse_prefix`, only what depends on the replaced activations runs: causal models
/// run the last position against the cached prefix ([`causal_tails`]), others the whole
/// sequence through the blocks between and the target rows of the last block ([`rows_tails`]).
/// Without it, each layer's tail runs the whole sequence on its own (the plain computation the
/// tests compare against).
///
/// With `probe` (and `cfg.reuse_prefix`), batch rows `probe` of the first layer's tail (one
/// quadrature point's rows: `P`, one per stacked query) get a zero leaf added to every block's
/// activations above that layer at the target rows, returned per block (`[P, n_pos, d_ff]`):
/// when that point is `α = 1` the tail is the unmodified pass, and the gradient with respect to
/// block `j`'s leaf is layer `j`'s own gradient there, everything above depending on it as
/// usual. So one tail gives every layer above it integrated gradients' point `α = 1`.
///
/// # Shapes
/// - `xs[i]`: `[k_i, n_pos, d_ff]` (`k_i` a multiple of `P`); output: `[Σ k_i, n_pos, d_model]`
pub(crate) fn final_rows<B: AutodiffBackend, M: KnowledgeModel<B>>(
    model: &M,
    c: &Cached<B>,
    layers: &[usize],
    positions: &[usize],
    xs: Vec<Tensor<B, 3>>,
    probe: Option<Range<usize>>,
    cfg: &AttributionConfig,
) -> Result<(Tensor<B, 3>, Leaves<B>), KnError> {
    let s = c.input.input_ids.dims()[1];
    let mut probe = probe.filter(|_| cfg.reuse_prefix).map(|rows| Probe { rows, leaves: Vec::new() });
    let stacked = if !cfg.reuse_prefix {
        let tails: Vec<Tensor<B, 3>> =
            layers.iter().zip(xs).map(|(&l, x)| plain_tail(model, c, l, positions, x)).collect();
        (!tails.is_empty()).then(|| Tensor::cat(tails, 0))
    } else if tail_rows(model, positions, s, cfg) == 1 && s > 1 {
        match causal_tails(model, c, layers, xs.clone(), &mut probe) {
            Some(resid) => Some(resid),
            None => {
                if let Some(p) = probe.as_mut() {
                    p.leaves.clear();
                }
                rows_tails(model, c, layers, positions, xs, &mut probe)
            }
        }
    } else {
        rows_tails(model, c, layers, positions, xs, &mut probe)
    };
    let resid = stacked.ok_or(KnError::Empty { what: "layers of an attribution pass" })?;
    Ok((resid, probe.map(|p| p.leaves).unwrap_or_default()))
}

/// Zero leaves of [`final_rows`]' probe: `(block, leaf)`, the leaf `[P, n_pos, d_ff]`.
pub(crate) type Leaves<B> = Vec<(usize, Tensor<B, 3>)>;

/// The probed batch rows of the first tail and the leaves added to them so far.
struct Probe<B: AutodiffBackend> {
    rows: Range<usize>,
    leaves: Leaves<B>,
}

impl<B: AutodiffBackend> Probe<B> {
    /// `act` (block `j`'s activations, the first tail's rows first) with a zero leaf added at
    /// the probed batch rows and the sequence rows `at`, the leaf kept.
    ///
    /// # Shapes
    /// - `act`: `[batch, seq or n_pos, d_ff]`; output: the same
    fn add(&mut self, j: usize, act: Tensor<B, 3>, at: &[usize]) -> Tensor<B, 3> {
        let d_ff = act.dims()[2];
        let rows = self.rows.clone();
        let leaf = Tensor::<B, 3>::zeros([rows.len(), at.len(), d_ff], &act.device()).require_grad();
        let mut act = act;
        for (i, &p) in at.iter().enumerate() {
            let range = [rows.clone(), p..p + 1, 0..d_ff];
            let sum = act.clone().slice(range.clone()) + leaf.clone().slice([0..rows.len(), i..i + 1, 0..d_ff]);
            act = act.slice_assign(range, sum);
        }
        self.leaves.push((j, leaf));
        act
    }
}

/// One layer's tail over the whole sequence, with nothing reused.
///
/// # Shapes
/// - `x`: `[k, n_pos, d_ff]`; output: `[k, n_pos, d_model]`
fn plain_tail<B: AutodiffBackend, M: KnowledgeModel<B>>(
    model: &M,
    c: &Cached<B>,
    l: usize,
    positions: &[usize],
    x: Tensor<B, 3>,
) -> Tensor<B, 3> {
    let k = x.dims()[0];
    let [_, _, d_ff] = c.acts[l].dims();
    let mut act = repeat(c.acts[l].clone(), k);
    let mid = repeat(c.mids[l].clone(), k);
    for (j, &p) in positions.iter().enumerate() {
        act = act.slice_assign([0..k, p..p + 1, 0..d_ff], x.clone().slice([0..k, j..j + 1, 0..d_ff]));
    }
    let resid = model.ffn_output(l, mid, act);
    let resid = run_layers(model, resid, &c.input, l + 1, &mut NoHook);
    gather_rows(resid, positions)
}

/// `t` (batch `P`, the queries stacked) repeated along the batch axis to batch `k`, a
/// multiple of `P`: row `b` is row `b % P` of `t`.
fn repeat<B: AutodiffBackend>(t: Tensor<B, 3>, k: usize) -> Tensor<B, 3> {
    let times = k / t.dims()[0].max(1);
    if times > 1 {
        t.repeat_dim(0, times)
    } else {
        t
    }
}

/// `new` appended to the running batch.
fn stack<B: AutodiffBackend>(running: Option<Tensor<B, 3>>, new: Tensor<B, 3>) -> Tensor<B, 3> {
    match running {
        Some(r) => Tensor::cat(vec![r, new], 0),
        None => new,
    }
}

/// The tails of `layers` as one wavefront over the whole sequence. Layer `l`'s FFN runs on
/// the target rows only (the other rows keep their cached output), the blocks between run on
/// every row of every tail started below them, and the last block computes its queries and
/// FFN at the target rows only. Entering block `l + 1`, a tail differs from the cached pass at
/// the target rows only: where the model can ([`KnowledgeModel::attention_half_changed`]),
/// that block projects only those rows to queries, keys and values, and the tail joins the
/// others' batch after its attention.
///
/// # Shapes
/// - `xs[i]`: `[k_i, n_pos, d_ff]`; output: `[Σ k_i, n_pos, d_model]`
fn rows_tails<B: AutodiffBackend, M: KnowledgeModel<B>>(
    model: &M,
    c: &Cached<B>,
    layers: &[usize],
    rows: &[usize],
    xs: Vec<Tensor<B, 3>>,
    probe: &mut Option<Probe<B>>,
) -> Option<Tensor<B, 3>> {
    let local: Vec<usize> = (0..rows.len()).collect();
    let last = c.acts.len() - 1;
    let first = *layers.first()?;
    let mut starts = layers.iter().copied().zip(xs).peekable();
    let mut resid: Option<Tensor<B, 3>> = None;
    // The tail started at block `j - 1`, entering block `j`.
    let mut fresh: Option<Tensor<B, 3>> = None;
    for j in first..=last {
        let fresh_mid = fresh.take().and_then(|f| {
            let mid = model.attention_half_changed(j, f.clone(), c.resids[j].clone(), rows, j == last, &c.input);
            if mid.is_none() {
                resid = Some(stack(resid.take(), f));
            }
            mid
        });
        // Tails started below `j` go through block `j`.
        let mid = resid.take().map(|r| {
            if j == last {
                model.attention_half_rows(j, r, rows, &c.input)
            } else {
                model.attention_half(j, r, &c.input)
            }
        });
        resid = match (mid, fresh_mid) {
            (Some(m), Some(f)) => Some(Tensor::cat(vec![m, f], 0)),
            (m, f) => m.or(f),
        }
        .map(|mid| {
            let mut act = model.ffn_activation(j, mid.clone());
            if let Some(p) = probe.as_mut() {
                // The first tail's rows lead the batch; the last block has the target rows only.
                act = p.add(j, act, if j == last { &local } else { rows });
            }
            model.ffn_output(j, mid, act)
        });
        // Layer `j`'s own tail starts with its FFN output at the target rows.
        if let Some((_, x)) = starts.next_if(|(l, _)| *l == j) {
            let k = x.dims()[0];
            let out = model.ffn_output(j, repeat(gather_rows(c.mids[j].clone(), rows), k), x);
            if j == last {
                resid = Some(stack(resid, out));
            } else {
                let mut r = repeat(c.resids[j + 1].clone(), k);
                let d = r.dims()[2];
                for (i, &p) in rows.iter().enumerate() {
                    r = r.slice_assign([0..k, p..p + 1, 0..d], out.clone().slice([0..k, i..i + 1, 0..d]));
                }
                fresh = Some(r);
            }
        }
    }
    resid
}

/// The tails of `layers` as one wavefront at the last position only: in a causal model nothing
/// before it depends on it, so blocks above `l` run one row per batch entry against the cached
/// residual stream of the prompt. `None` if the model cannot (then the whole sequence runs).
///
/// # Shapes
/// - `xs[i]`: `[k_i, 1, d_ff]`; output: `[Σ k_i, 1, d_model]`
fn causal_tails<B: AutodiffBackend, M: KnowledgeModel<B>>(
    model: &M,
    c: &Cached<B>,
    layers: &[usize],
    xs: Vec<Tensor<B, 3>>,
    probe: &mut Option<Probe<B>>,
) -> Option<Tensor<B, 3>> {
    let first = *layers.first()?;
    let [p, s, d] = c.mids[first].dims();
    let last = s - 1;
    let mut starts = layers.iter().copied().zip(xs).peekable();
    let mut resid: Option<Tensor<B, 3>> = None;
    for j in first..c.resids.len() {
        if let Some(r) = resid.take() {
            let prefix = c.resids[j].clone().slice([0..p, 0..last, 0..d]);
            let mid = model.attention_half_suffix(j, r, prefix, &c.input)?;
            let mut act = model.ffn_activation(j, mid.clone());
            if let Some(p) = probe.as_mut() {
                act = p.add(j, act, &[0]);
            }
            resid = Some(model.ffn_output(j, mid, act));
        }
        if let Some((_, x)) = starts.next_if(|(l, _)| *l == j) {
            let k = x.dims()[0];
            let mid = repeat(c.mids[j].clone().slice([0..p, last..s, 0..d]), k);
            resid = Some(stack(resid, model.ffn_output(j, mid, x)));
        }
    }
    resid
}
