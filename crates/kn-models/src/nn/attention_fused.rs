//! The attention core `softmax(scale · q·kᵀ + bias) · v` for the ndarray build: one
//! multi-threaded pass over the (batch, head) pairs forwards and one backwards.
//!
//! Composed from burn's primitives it is two batched products whose operands burn-ndarray
//! copies first (the heads are strided views of the projections), a scale, a bias add and a
//! five-op softmax forwards, and about twice that backwards, each allocating. The heads here
//! are read in place through their strides, and the scores of one query row never leave the
//! cache. On this project's shapes (tens of rows and keys per head) the products are small,
//! so plain loops over contiguous head rows are as fast as any kernel would be, once they
//! vectorise: dot products run in 16 independent lanes (a running sum is one scalar chain),
//! weighted sums of rows keep each block of 64 outputs in registers across the rows
//! ([`combine`]), and each (batch row, head) pair's loops are compiled for AVX-512 or AVX2
//! where the CPU has it. Every build adds in the same order, so they give the same bits.

use ndarray::{s, Array4, ArrayD, ArrayView2, ArrayView4, ArrayViewD, Axis, CowArray, Ix2, Ix4};
use rayon::prelude::*;

/// The four operands of the core as 4-D views; `None` unless their shapes fit together:
/// `q`: `[b, h, r, dh]`; `k`, `v`: `[b or 1, h, t, dh]`; `bias`: `[b or 1, 1, r or a divisor of
/// r (or 1), t]`.
struct Operands<'a> {
    q: ArrayView4<'a, f32>,
    k: ArrayView4<'a, f32>,
    v: ArrayView4<'a, f32>,
    bias: Option<ArrayView4<'a, f32>>,
}

impl<'a> Operands<'a> {
    fn new(
        q: ArrayViewD<'a, f32>,
        k: ArrayViewD<'a, f32>,
        v: ArrayViewD<'a, f32>,
        bias: Option<ArrayViewD<'a, f32>>,
    ) -> Option<Self> {
        let q = q.into_dimensionality::<Ix4>().ok()?;
        let k = k.into_dimensionality::<Ix4>().ok()?;
        let v = v.into_dimensionality::<Ix4>().ok()?;
        let bias = match bias {
            Some(b) => Some(b.into_dimensionality::<Ix4>().ok()?),
            None => None,
        };
        let (b, h, r, dh) = q.dim();
        let (bk, hk, t, dk) = k.dim();
        if k.dim() != v.dim() || hk != h || dk != dh || !(bk == b || bk == 1) || b == 0 || h == 0 || r == 0 {
            return None;
        }
        if let Some(bias) = &bias {
            let (bb, one, n, tb) = bias.dim();
            if !(bb == b || bb == 1) || one != 1 || tb != t || n == 0 || r % n != 0 {
                return None;
            }
        }
        Some(Self { q, k, v, bias })
    }

    /// The key/value batch row batch row `bi` reads.
    fn kv_row(&self, bi: usize) -> usize {
        if self.k.dim().0 == 1 {
            0
        } else {
            bi
        }
    }

    /// Fills `p` (`[r, t]`) with the probabilities of batch row `bi`, head `hi`.
    #[inline(always)]
    fn probs(&self, bi: usize, hi: usize, scale: f32, p: &mut [f32]) {
        let t = self.k.dim().2;
        let q = contiguous_rows(self.q.slice(s![bi, hi, .., ..]));
        let k = contiguous_rows(self.k.slice(s![self.kv_row(bi), hi, .., ..]));
        let (qrows, krows) = (row_slices(&q), row_slices(&k));
        let bias = self.bias.as_ref().map(|b| {
            let bb = if b.dim().0 == 1 { 0 } else { bi };
            b.slice(s![bb, 0, .., ..])
        });
        for (i, (row, qi)) in p.chunks_exact_mut(t.max(1)).zip(&qrows).enumerate() {
            for (pj, kj) in row.iter_mut().zip(&krows) {
                *pj = scale * dot_slices(qi, kj);
            }
            if let Some(bias) = &bias {
                let n = bias.nrows();
                for (pj, &bj) in row.iter_mut().zip(bias.row(i % n)) {
                    *pj += bj;
                }
            }
            let max = row.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
            let mut total = 0.0f32;
            for pj in row.iter_mut() {
                *pj = (*pj - max).exp();
                total += *pj;
            }
            let inv = 1.0 / total;
            row.iter_mut().for_each(|pj| *pj *= inv);
        }
    }
}

/// `a` itself if each of its rows is contiguous (heads split from a projection are), else a
/// row-major copy.
fn contiguous_rows(a: ArrayView2<'_, f32>) -> CowArray<'_, f32, Ix2> {
    if a.ncols() <= 1 || a.strides()[1] == 1 {
        CowArray::from(a)
    } else {
        CowArray::from(a.to_owned())
    }
}

/// The rows of `a` as slices (every row is contiguous after [`contiguous_rows`]; a row that
/// were not would read as empty).
fn row_slices<'a>(a: &'a CowArray<'_, f32, Ix2>) -> Vec<&'a [f32]> {
    a.rows().into_iter().map(|row| row.to_slice().unwrap_or(&[])).collect()
}

/// Outputs [`combine`] keeps in registers at once: four AVX-512 or eight AVX2 registers.
const BLOCK: usize = 64;

/// `out = Σ_n weights[n] · rows[n]`, the terms added in order: element by element the sums of
/// `out` zeroed and then one `out += w · x` pass per term, but each block of [`BLOCK`] outputs
/// stays in registers across the terms instead of being loaded and stored once per term.
/// Rows shorter than `out` (none, from [`row_slices`]) add nothing.
#[inline(always)]
fn combine(out: &mut [f32], weights: &[f32], rows: &[&[f32]]) {
    let n = out.len();
    let full = n / BLOCK * BLOCK;
    for c0 in (0..full).step_by(BLOCK) {
        let mut acc = [0.0f32; BLOCK];
        for (&w, x) in weights.iter().zip(rows) {
            if let Some(x) = x.get(c0..c0 + BLOCK).and_then(|x| <&[f32; BLOCK]>::try_from(x).ok()) {
                for l in 0..BLOCK {
                    acc[l] += w * x[l];
                }
            }
        }
        out[c0..c0 + BLOCK].copy_from_slice(&acc);
    }
    let tail = &mut out[full..];
    tail.fill(0.0);
    for (&w, x) in weights.iter().zip(rows) {
        for (o, &v) in tail.iter_mut().zip(x.get(full..n).unwrap_or(&[])) {
            *o += w * v;
        }
    }
}

/// `Σ a_i b_i` in [`LANES`] running sums, added pairwise at the end, then the tail: the lanes
/// are independent, so the loop vectorises (one running sum would be a chain of scalar adds).
#[inline(always)]
fn dot_slices(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let split = n / LANES * LANES;
    let mut acc = [0.0f32; LANES];
    for (x, y) in a[..split].chunks_exact(LANES).zip(b[..split].chunks_exact(LANES)) {
        for i in 0..LANES {
            acc[i] += x[i] * y[i];
        }
    }
    let mut width = LANES;
    while width > 1 {
        width /= 2;
        for i in 0..width {
            acc[i] += acc[i + width];
        }
    }
    acc[0] + a[split..n].iter().zip(&b[split..n]).map(|(x, y)| x * y).sum::<f32>()
}

/// Running sums of [`dot_slices`]: two AVX2 registers, one AVX-512 register.
const LANES: usize = 16;

/// Which build of the pairs' loops runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Build {
    /// The baseline target's.
    Baseline,
    /// AVX2 and FMA ([`super::avx2_fma`]).
    Avx2,
    /// AVX-512 F, DQ and VL with AVX2 and FMA ([`super::avx512`]).
    Avx512,
}

/// The widest build this CPU runs.
fn build() -> Build {
    #[cfg(target_arch = "x86_64")]
    {
        if super::avx512() {
            return Build::Avx512;
        }
        if super::avx2_fma() {
            return Build::Avx2;
        }
    }
    Build::Baseline
}

/// One (batch row, head) pair of [`forward`]: its probabilities into `p` (`[r, t]`) and its
/// context rows into `ctx` (`[r, dh]`).
#[inline(always)]
fn forward_pair(ops: &Operands<'_>, pair: usize, scale: f32, ctx: &mut [f32], p: &mut [f32]) {
    let (_, h, _, dh) = ops.q.dim();
    let t = ops.k.dim().2;
    let (bi, hi) = (pair / h, pair % h);
    ops.probs(bi, hi, scale, p);
    let v = contiguous_rows(ops.v.slice(s![ops.kv_row(bi), hi, .., ..]));
    let vrows = row_slices(&v);
    for (out, pi) in ctx.chunks_exact_mut(dh.max(1)).zip(p.chunks_exact(t.max(1))) {
        combine(out, pi, &vrows);
    }
}

/// [`forward_pair`] compiled for AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn forward_pair_avx2(ops: &Operands<'_>, pair: usize, scale: f32, ctx: &mut [f32], p: &mut [f32]) {
    forward_pair(ops, pair, scale, ctx, p)
}

/// [`forward_pair`] compiled for AVX-512.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq,avx512vl,avx2,fma")]
fn forward_pair_avx512(ops: &Operands<'_>, pair: usize, scale: f32, ctx: &mut [f32], p: &mut [f32]) {
    forward_pair(ops, pair, scale, ctx, p)
}

/// [`forward_pair`] in `build`, which must be [`build()`] or narrower.
fn forward_pair_dispatch(build: Build, ops: &Operands<'_>, pair: usize, scale: f32, ctx: &mut [f32], p: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    #[allow(unsafe_code)]
    match build {
        // SAFETY: `build` is at most [`build()`]: the CPU has every feature the build is
        // compiled for.
        Build::Avx512 => return unsafe { forward_pair_avx512(ops, pair, scale, ctx, p) },
        // SAFETY: as above.
        Build::Avx2 => return unsafe { forward_pair_avx2(ops, pair, scale, ctx, p) },
        Build::Baseline => {}
    }
    let _ = build;
    forward_pair(ops, pair, scale, ctx, p)
}

/// `softmax(scale · q·kᵀ + bias) · v` per (batch row, head), as a new row-major array, and with
/// `keep` the probabilities its backward needs. Keys and values of batch 1 serve every batch
/// row; bias rows repeat over the query rows (row `i` reads bias row `i mod n`). `None` if the
/// shapes do not fit.
///
/// # Shapes
/// - `q`: `[b, h, r, dh]`, `k`, `v`: `[b or 1, h, t, dh]`, `bias`: `[b or 1, 1, n, t]` (`n`
///   divides `r`); output: `[b, h, r, dh]`, probabilities `[b, h, r, t]`
pub(crate) fn forward(
    q: ArrayViewD<'_, f32>,
    k: ArrayViewD<'_, f32>,
    v: ArrayViewD<'_, f32>,
    bias: Option<ArrayViewD<'_, f32>>,
    scale: f32,
    keep: bool,
) -> Option<(ArrayD<f32>, Option<ArrayD<f32>>)> {
    let ops = Operands::new(q, k, v, bias)?;
    let (b, h, r, dh) = ops.q.dim();
    let t = ops.k.dim().2;
    // The output in `q`'s memory order: heads split from a projection come in as
    // `[b, s, h, dh]` memory viewed as `[b, h, s, dh]`, and a context laid out the same way
    // merges back into `[b, s, d]` without a copy.
    let mut ctx = zeros_in_order_of(ops.q.dim(), ops.q.strides());
    let mut probs = vec![0.0f32; if keep { b * h * r * t } else { 0 }];
    let build = build();
    // Each pair writes a contiguous scratch, which then lands in its (strided) rows.
    let body = |pair: usize, scratch: &mut [f32], p: &mut [f32], mut out: ndarray::ArrayViewMut2<'_, f32>| {
        forward_pair_dispatch(build, &ops, pair, scale, scratch, p);
        assign_rows(&mut out, scratch);
    };
    let pairs = pair_views(&mut ctx);
    if keep {
        pairs
            .into_par_iter()
            .zip(probs.par_chunks_mut(r * t))
            .enumerate()
            .for_each_init(|| vec![0.0f32; r * dh], |scratch, (pair, (out, p))| body(pair, scratch, p, out));
    } else {
        // Only one head's probabilities at a time are needed: no [b, h, r, t] array.
        pairs.into_par_iter().enumerate().for_each_init(
            || (vec![0.0f32; r * dh], vec![0.0f32; r * t]),
            |(scratch, p), (pair, out)| body(pair, scratch, p, out),
        );
    }
    let probs = if keep { Some(ArrayD::from_shape_vec(vec![b, h, r, t], probs).ok()?) } else { None };
    Some((ctx.into_dyn(), probs))
}

/// Zeros of the 4-D `shape` whose memory runs over the axes in the order of `strides`
/// (largest first; ties in axis order), viewed in `shape`'s axis order.
///
/// # Shapes
/// - output: `shape`
fn zeros_in_order_of(shape: (usize, usize, usize, usize), strides: &[isize]) -> Array4<f32> {
    let dims = [shape.0, shape.1, shape.2, shape.3];
    let mut order = [0usize, 1, 2, 3];
    // A length-1 axis has no stride to speak of: it goes where it stands.
    let key = |a: usize| if dims[a] <= 1 { None } else { strides.get(a).map(|s| s.unsigned_abs()) };
    order.sort_by(|&x, &y| match (key(x), key(y)) {
        (Some(sx), Some(sy)) => sy.cmp(&sx).then(x.cmp(&y)),
        _ => x.cmp(&y),
    });
    let mut inverse = [0usize; 4];
    for (i, &axis) in order.iter().enumerate() {
        inverse[axis] = i;
    }
    Array4::zeros(order.map(|a| dims[a])).permuted_axes(inverse)
}

/// The `[r, c]` views of every (batch row, head) pair of `x` (`[b, h, r, c]`), pair
/// `bi · h + hi` at that index.
fn pair_views(x: &mut Array4<f32>) -> Vec<ndarray::ArrayViewMut2<'_, f32>> {
    x.outer_iter_mut().flat_map(|heads| heads.into_outer_iter_mut()).collect()
}

/// Row `i` of `out` (`[r, c]`, any strides) from `src[i·c..(i + 1)·c]`.
fn assign_rows(out: &mut ndarray::ArrayViewMut2<'_, f32>, src: &[f32]) {
    let c = out.ncols();
    for (mut row, chunk) in out.rows_mut().into_iter().zip(src.chunks_exact(c.max(1))) {
        row.assign(&ndarray::ArrayView1::from(chunk));
    }
}

/// What [`backward`]'s pairs read: the operands, the output gradient `g` (`[b, h, r, dh]`) and
/// the kept probabilities `p` (`[b, h, r, t]`).
struct Grads<'a, 'o> {
    ops: &'o Operands<'a>,
    g: ndarray::ArrayView4<'a, f32>,
    p: ndarray::ArrayView4<'a, f32>,
    scale: f32,
}

impl Grads<'_, '_> {
    /// One (batch row, head) pair's `dq` (`[r, dh]`), `dk` and `dv` (`[t, dh]`), with `work`
    /// (at least `3 · r · t` long) as scratch.
    #[inline(always)]
    fn pair(&self, pair: usize, work: &mut [f32], dq: &mut [f32], dk: &mut [f32], dv: &mut [f32]) {
        let ops = self.ops;
        let (_, h, r, dh) = ops.q.dim();
        let t = ops.k.dim().2;
        let scale = self.scale;
        let (bi, hi) = (pair / h, pair % h);
        let kr = ops.kv_row(bi);
        let q = contiguous_rows(ops.q.slice(s![bi, hi, .., ..]));
        let k = contiguous_rows(ops.k.slice(s![kr, hi, .., ..]));
        let v = contiguous_rows(ops.v.slice(s![kr, hi, .., ..]));
        let g = contiguous_rows(self.g.slice(s![bi, hi, .., ..]));
        let p = contiguous_rows(self.p.slice(s![bi, hi, .., ..]));
        let (qrows, krows, vrows, grows, prows) =
            (row_slices(&q), row_slices(&k), row_slices(&v), row_slices(&g), row_slices(&p));
        // `scale · dS` by rows (`[r, t]`) and by columns (`[t, r]`), and `Pᵀ` (`[t, r]`).
        let (ws, rest) = work.split_at_mut(r * t);
        let (ws_t, p_t) = rest.split_at_mut(r * t);
        for (i, (gi, pi)) in grows.iter().zip(&prows).enumerate() {
            let wi = &mut ws[i * t..(i + 1) * t];
            let mut weighted = 0.0f32;
            for ((w, vj), &pij) in wi.iter_mut().zip(&vrows).zip(pi.iter()) {
                *w = dot_slices(gi, vj);
                weighted += pij * *w;
            }
            for (j, (w, &pij)) in wi.iter_mut().zip(pi.iter()).enumerate() {
                *w = scale * (pij * (*w - weighted));
                ws_t[j * r + i] = *w;
                p_t[j * r + i] = pij;
            }
        }
        // dq = scale · dS·k, dk = scale · dSᵀ·q, dv = Pᵀ·g: each output row a weighted sum of
        // rows, in the order the terms were always added (keys for dq, query rows for dk, dv).
        for (out, wi) in dq.chunks_exact_mut(dh.max(1)).zip(ws.chunks_exact(t.max(1))) {
            combine(out, wi, &krows);
        }
        for (j, (out_k, out_v)) in dk.chunks_exact_mut(dh.max(1)).zip(dv.chunks_exact_mut(dh.max(1))).enumerate() {
            combine(out_k, &ws_t[j * r..(j + 1) * r], &qrows);
            combine(out_v, &p_t[j * r..(j + 1) * r], &grows);
        }
    }

    /// [`Grads::pair`] compiled for AVX2 and FMA.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn pair_avx2(&self, pair: usize, work: &mut [f32], dq: &mut [f32], dk: &mut [f32], dv: &mut [f32]) {
        self.pair(pair, work, dq, dk, dv)
    }

    /// [`Grads::pair`] compiled for AVX-512.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512dq,avx512vl,avx2,fma")]
    fn pair_avx512(&self, pair: usize, work: &mut [f32], dq: &mut [f32], dk: &mut [f32], dv: &mut [f32]) {
        self.pair(pair, work, dq, dk, dv)
    }

    /// [`Grads::pair`] in `build`, which must be [`build()`] or narrower.
    fn pair_dispatch(
        &self,
        build: Build,
        pair: usize,
        work: &mut [f32],
        dq: &mut [f32],
        dk: &mut [f32],
        dv: &mut [f32],
    ) {
        #[cfg(target_arch = "x86_64")]
        #[allow(unsafe_code)]
        match build {
            // SAFETY: `build` is at most [`build()`]: the CPU has every feature the build is
            // compiled for.
            Build::Avx512 => return unsafe { self.pair_avx512(pair, work, dq, dk, dv) },
            // SAFETY: as above.
            Build::Avx2 => return unsafe { self.pair_avx2(pair, work, dq, dk, dv) },
            Build::Baseline => {}
        }
        let _ = build;
        self.pair(pair, work, dq, dk, dv)
    }
}

/// The gradients of [`forward`]'s output with respect to `q`, `k` and `v` given its output
/// gradient `g` and its kept probabilities (keys and values of batch 1 get the sum over the
/// batch): with `dS = P ⊙ (g·vᵀ − rowsum(P ⊙ g·vᵀ))`, `dq = scale · dS·k`, `dk = scale · dSᵀ·q`,
/// `dv = Pᵀ·g`. `None` if the shapes do not fit.
///
/// # Shapes
/// - `g`, `q`, `dq`: `[b, h, r, dh]`; `k`, `v`, `dk`, `dv`: `[b or 1, h, t, dh]`; `probs`: `[b, h, r, t]`
pub(crate) fn backward(
    g: ArrayViewD<'_, f32>,
    q: ArrayViewD<'_, f32>,
    k: ArrayViewD<'_, f32>,
    v: ArrayViewD<'_, f32>,
    probs: ArrayViewD<'_, f32>,
    scale: f32,
) -> Option<[ArrayD<f32>; 3]> {
    let ops = Operands::new(q, k, v, None)?;
    let g = g.into_dimensionality::<Ix4>().ok()?;
    let p = probs.into_dimensionality::<Ix4>().ok()?;
    let (b, h, r, dh) = ops.q.dim();
    let t = ops.k.dim().2;
    if g.dim() != (b, h, r, dh) || p.dim() != (b, h, r, t) {
        return None;
    }
    // Gradients in the memory order of their operands (see `forward`), so that they flow back
    // through the head split without a copy. Broadcast keys and values get per-pair gradients,
    // summed over the batch below.
    let broadcast = ops.k.dim().0 == 1 && b > 1;
    let mut dq = zeros_in_order_of(ops.q.dim(), ops.q.strides());
    let kv_shape = (b, h, t, dh);
    let (mut dk, mut dv) = if broadcast {
        (Array4::zeros(kv_shape), Array4::zeros(kv_shape))
    } else {
        (zeros_in_order_of(kv_shape, ops.k.strides()), zeros_in_order_of(kv_shape, ops.v.strides()))
    };
    let (build, grads) = (build(), Grads { ops: &ops, g, p, scale });
    let pairs: Vec<_> = pair_views(&mut dq).into_iter().zip(pair_views(&mut dk)).zip(pair_views(&mut dv)).collect();
    pairs.into_par_iter().enumerate().for_each_init(
        || (vec![0.0f32; 3 * r * t], vec![0.0f32; r * dh], vec![0.0f32; t * dh], vec![0.0f32; t * dh]),
        |(work, sq, sk, sv), (pair, ((mut dq, mut dk), mut dv))| {
            grads.pair_dispatch(build, pair, work, sq, sk, sv);
            assign_rows(&mut dq, sq);
            assign_rows(&mut dk, sk);
            assign_rows(&mut dv, sv);
        },
    );
    let summed = |x: Array4<f32>, like: &ArrayView4<'_, f32>| -> Array4<f32> {
        if !broadcast {
            return x;
        }
        // Batch rows in order, into the operand's memory order.
        let mut total = zeros_in_order_of((1, h, t, dh), like.strides());
        for row in x.outer_iter() {
            ndarray::Zip::from(total.index_axis_mut(Axis(0), 0)).and(&row).for_each(|o, &v| *o += v);
        }
        total
    };
    let (dk, dv) = (summed(dk, &ops.k), summed(dv, &ops.v));
    Some([dq.into_dyn(), dk.into_dyn(), dv.into_dyn()])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filled(shape: &[usize], seed: f32) -> ArrayD<f32> {
        let n: usize = shape.iter().product();
        ArrayD::from_shape_vec(shape.to_vec(), (0..n).map(|i| (i as f32 * 0.37 + seed).sin()).collect()).unwrap()
    }

    /// The core in f64 from its definition, and `Σ g ⊙ out`.
    fn reference(
        q: &ArrayD<f32>,
        k: &ArrayD<f32>,
        v: &ArrayD<f32>,
        bias: Option<&ArrayD<f32>>,
        scale: f64,
    ) -> Vec<f64> {
        let (b, h, r, dh) = (q.shape()[0], q.shape()[1], q.shape()[2], q.shape()[3]);
        let t = k.shape()[2];
        let mut out = vec![0.0f64; b * h * r * dh];
        for bi in 0..b {
            let kb = if k.shape()[0] == 1 { 0 } else { bi };
            for hi in 0..h {
                for i in 0..r {
                    let mut sc: Vec<f64> = (0..t)
                        .map(|j| {
                            let dotp: f64 = (0..dh).map(|c| q[[bi, hi, i, c]] as f64 * k[[kb, hi, j, c]] as f64).sum();
                            let bv = bias.map_or(0.0, |bs| {
                                let bb = if bs.shape()[0] == 1 { 0 } else { bi };
                                bs[[bb, 0, i % bs.shape()[2], j]] as f64
                            });
                            scale * dotp + bv
                        })
                        .collect();
                    let m = sc.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    sc.iter_mut().for_each(|x| *x = (*x - m).exp());
                    let tot: f64 = sc.iter().sum();
                    for c in 0..dh {
                        out[((bi * h + hi) * r + i) * dh + c] =
                            (0..t).map(|j| sc[j] / tot * v[[kb, hi, j, c]] as f64).sum();
                    }
                }
            }
        }
        out
    }

    #[test]
    fn values_and_gradients_match_f64_with_broadcast_keys_and_repeated_bias() {
        let (b, h, r, t, dh) = (3, 2, 4, 5, 6);
        let scale = 0.4f64;
        for broadcast in [false, true] {
            let bk = if broadcast { 1 } else { b };
            let q = filled(&[b, h, r, dh], 0.1);
            let k = filled(&[bk, h, t, dh], 1.3);
            let v = filled(&[bk, h, t, dh], 2.9);
            // Two bias rows repeated over the four query rows (a group of two), one masked key.
            let mut bias = filled(&[1, 1, 2, t], 0.7);
            bias[[0, 0, 1, 4]] = -1e9;
            let g = filled(&[b, h, r, dh], 4.1);
            let (out, probs) = forward(q.view(), k.view(), v.view(), Some(bias.view()), scale as f32, true).unwrap();
            let (out2, none) = forward(q.view(), k.view(), v.view(), Some(bias.view()), scale as f32, false).unwrap();
            assert!(none.is_none());
            assert_eq!(out, out2, "keeping the probabilities changed the values");
            let want = reference(&q, &k, &v, Some(&bias), scale);
            let worst = out.iter().zip(&want).map(|(a, w)| (*a as f64 - w).abs()).fold(0.0, f64::max);
            assert!(worst <= 1e-6, "values off by {worst:e}");
            let grads = backward(g.view(), q.view(), k.view(), v.view(), probs.unwrap().view(), scale as f32).unwrap();
            // Central differences of Σ g ⊙ out in f64, for one element of each operand batch.
            let objective = |q: &ArrayD<f32>, k: &ArrayD<f32>, v: &ArrayD<f32>| -> f64 {
                reference(q, k, v, Some(&bias), scale).iter().zip(g.iter()).map(|(o, &g)| o * g as f64).sum()
            };
            let mut worst_g = 0.0f64;
            for (which, grad) in grads.iter().enumerate() {
                let base = [&q, &k, &v][which];
                assert_eq!(grad.shape(), base.shape());
                for idx in 0..base.len() {
                    let bump = |delta: f32| {
                        let mut ops = [q.clone(), k.clone(), v.clone()];
                        ops[which].as_slice_mut().unwrap()[idx] += delta;
                        objective(&ops[0], &ops[1], &ops[2])
                    };
                    let fd = (bump(1e-3) - bump(-1e-3)) / 2e-3;
                    let got = grad.as_slice().unwrap()[idx] as f64;
                    worst_g = worst_g.max((got - fd).abs() / fd.abs().max(1.0));
                }
            }
            eprintln!("attention core (broadcast keys: {broadcast}): values {worst:.1e}, gradients {worst_g:.1e}");
            assert!(worst_g <= 2e-3, "gradients off by {worst_g:e}");
        }
    }

    #[test]
    fn the_wide_and_baseline_builds_give_the_same_bits() {
        // dh 70 = a full 64-output block and a tail, four full 16-lane dot blocks and a tail;
        // t 9 keys, r 5 rows.
        let (b, h, r, t, dh) = (2, 3, 5, 9, 70);
        let q = filled(&[b, h, r, dh], 0.2);
        let k = filled(&[b, h, t, dh], 1.1);
        let v = filled(&[b, h, t, dh], 2.3);
        let g = filled(&[b, h, r, dh], 3.7);
        let ops = Operands::new(q.view(), k.view(), v.view(), None).unwrap();
        let (_, probs) = forward(q.view(), k.view(), v.view(), None, 0.3, true).unwrap();
        let probs = probs.unwrap().into_dimensionality::<Ix4>().unwrap();
        let grads = Grads { ops: &ops, g: g.view().into_dimensionality().unwrap(), p: probs.view(), scale: 0.3 };
        let here = build();
        let builds: Vec<Build> =
            [Build::Baseline, Build::Avx2, Build::Avx512].into_iter().filter(|&w| w as u8 <= here as u8).collect();
        for pair in 0..b * h {
            let run = |build: Build| {
                let (mut ctx, mut p) = (vec![f32::NAN; r * dh], vec![0.0f32; r * t]);
                forward_pair_dispatch(build, &ops, pair, 0.3, &mut ctx, &mut p);
                let (mut work, mut dq, mut dk, mut dv) =
                    (vec![f32::NAN; 3 * r * t], vec![f32::NAN; r * dh], vec![f32::NAN; t * dh], vec![f32::NAN; t * dh]);
                grads.pair_dispatch(build, pair, &mut work, &mut dq, &mut dk, &mut dv);
                [ctx, p, dq, dk, dv].map(|x| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>())
            };
            let baseline = run(Build::Baseline);
            for &w in &builds {
                assert_eq!(run(w), baseline, "pair {pair}, {w:?}");
            }
        }
        eprintln!("attention pairs: builds {builds:?} give the same bits");
        // The laned dot against f64, across lengths with and without a tail.
        for n in [0, 1, 15, 16, 17, 64, 100] {
            let a: Vec<f32> = (0..n).map(|i| (i as f32 * 0.7).sin()).collect();
            let c: Vec<f32> = (0..n).map(|i| (i as f32 * 1.3).cos()).collect();
            let want: f64 = a.iter().zip(&c).map(|(x, y)| *x as f64 * *y as f64).sum();
            let got = dot_slices(&a, &c) as f64;
            assert!((got - want).abs() <= 1e-6 * (n as f64).max(1.0), "n {n}: {got} vs {want}");
        }
    }

    fn p_of(x: &ArrayD<f32>) -> ArrayD<f32> {
        forward(x.view(), x.view(), x.view(), None, 0.5, true).unwrap().1.unwrap()
    }

    #[test]
    fn strided_heads_are_read_in_place_and_bad_shapes_refused() {
        // Heads as burn makes them: [b, s, h, dh] viewed as [b, h, s, dh].
        let x = filled(&[2, 3, 2, 4], 0.5);
        let heads = x.view().permuted_axes(vec![0, 2, 1, 3]);
        let owned = heads.as_standard_layout().into_owned();
        let (a, _) = forward(heads.clone(), heads.clone(), heads.clone(), None, 0.5, false).unwrap();
        let (b, _) = forward(owned.view(), owned.view(), owned.view(), None, 0.5, false).unwrap();
        assert_eq!(a, b);
        // Outputs come back in their operands' memory order: the context and the gradients of
        // split heads merge back into [b, s, h·dh] without a copy.
        let merged = |x: &ArrayD<f32>| x.view().permuted_axes(vec![0, 2, 1, 3]).is_standard_layout();
        assert!(merged(&a), "context strides {:?}", a.strides());
        assert!(b.is_standard_layout(), "a standard q gives a standard context");
        let (_, p) = forward(heads.clone(), heads.clone(), heads.clone(), None, 0.5, true).unwrap();
        let g = filled(&[2, 2, 3, 4], 0.9);
        let grads = backward(g.view(), heads.clone(), heads.clone(), heads.clone(), p.unwrap().view(), 0.5).unwrap();
        let grads_owned =
            backward(g.view(), owned.view(), owned.view(), owned.view(), p_of(&owned).view(), 0.5).unwrap();
        for (x, y) in grads.iter().zip(&grads_owned) {
            assert!(merged(x), "gradient strides {:?}", x.strides());
            assert_eq!(x, y, "the layout changed the values");
        }
        let k = filled(&[2, 2, 3, 5], 0.1);
        assert!(forward(owned.view(), k.view(), k.view(), None, 0.5, false).is_none(), "head widths differ");
    }
}
