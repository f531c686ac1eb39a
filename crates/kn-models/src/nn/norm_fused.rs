//! LayerNorm and RMSNorm over the last axis for the ndarray build: one multi-threaded pass per
//! row for the values and one for the input gradient.
//!
//! Composed from burn's primitives a LayerNorm is eight allocating, single-threaded passes
//! forwards (mean, centre, square, mean, add, sqrt, divide, scale and shift) and about twice
//! that backwards, each keeping its operands alive for the backward pass: on a bert-base
//! attribution that was most of the non-product time after the products themselves. The row
//! statistics are accumulated in f64 (two passes for the variance, as PyTorch's CPU kernel),
//! so they are at least as accurate as the composition they replace.

use ndarray::{ArrayD, ArrayViewD, IxDyn};
use rayon::prelude::*;

use super::softmax::standard;
use super::NormKind;

/// Rows per parallel work item (at least one).
fn rows_per_item(width: usize) -> usize {
    ((1 << 14) / width.max(1)).max(1)
}

/// What the backward pass of a norm needs: the normalised input `x̂` (before the scale) and
/// `1/σ` of each row.
pub(crate) struct NormState {
    /// `x̂`, of the input's shape.
    pub(crate) xhat: ArrayD<f32>,
    /// `1/√(var + eps)` (LayerNorm) or `1/√(mean(x²) + eps)` (RMSNorm) per row, `[rows]`.
    pub(crate) rstd: ArrayD<f32>,
}

/// `x̂ · γ + β` over the last axis (`β` for LayerNorm only), as a new row-major array of `x`'s
/// shape, and with `keep` what its backward pass needs. `None` for a 0-d input or `γ`/`β`
/// whose length is not the last axis.
///
/// # Shapes
/// - `x`, output, `x̂`: `[.., d]`; `gamma`, `beta`: `[d]`; `rstd`: `[rows]`
pub(crate) fn forward(
    x: ArrayViewD<'_, f32>,
    gamma: ArrayViewD<'_, f32>,
    beta: Option<ArrayViewD<'_, f32>>,
    kind: NormKind,
    eps: f64,
    keep: bool,
) -> Option<(ArrayD<f32>, Option<NormState>)> {
    let d = *x.shape().last()?;
    let gamma = standard(&gamma);
    let beta = beta.as_ref().map(standard);
    if gamma.len() != d || beta.as_ref().is_some_and(|b| b.len() != d) || d == 0 {
        return None;
    }
    let shape = x.raw_dim();
    let input = standard(&x);
    let rows = input.len() / d;
    let mut y = vec![0.0f32; input.len()];
    let mut xhat = if keep { vec![0.0f32; input.len()] } else { Vec::new() };
    let mut rstd = vec![0.0f32; if keep { rows } else { 0 }];
    let item = rows_per_item(d);
    let body = |x: &[f32], y: &mut [f32], xh: &mut [f32], rs: &mut [f32]| {
        for (r, (x, y)) in x.chunks_exact(d).zip(y.chunks_exact_mut(d)).enumerate() {
            let mean = match kind {
                NormKind::Layer => x.iter().map(|&v| v as f64).sum::<f64>() / d as f64,
                NormKind::Rms => 0.0,
            };
            let var = x.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / d as f64;
            let inv = (1.0 / (var + eps).sqrt()) as f32;
            let (mean, gamma) = (mean as f32, &gamma[..]);
            match &beta {
                Some(beta) => {
                    for (((y, &v), &g), &b) in y.iter_mut().zip(x).zip(gamma).zip(beta.iter()) {
                        *y = (v - mean) * inv * g + b;
                    }
                }
                None => {
                    for ((y, &v), &g) in y.iter_mut().zip(x).zip(gamma) {
                        *y = (v - mean) * inv * g;
                    }
                }
            }
            if !rs.is_empty() {
                rs[r] = inv;
                for (h, &v) in xh[r * d..(r + 1) * d].iter_mut().zip(x) {
                    *h = (v - mean) * inv;
                }
            }
        }
    };
    if keep {
        y.par_chunks_mut(item * d)
            .zip(input.par_chunks(item * d))
            .zip(xhat.par_chunks_mut(item * d))
            .zip(rstd.par_chunks_mut(item))
            .for_each(|(((y, x), xh), rs)| body(x, y, xh, rs));
    } else {
        y.par_chunks_mut(item * d).zip(input.par_chunks(item * d)).for_each(|(y, x)| body(x, y, &mut [], &mut []));
    }
    let y = ArrayD::from_shape_vec(shape.clone(), y).ok()?;
    let state = if keep {
        Some(NormState {
            xhat: ArrayD::from_shape_vec(shape, xhat).ok()?,
            rstd: ArrayD::from_shape_vec(IxDyn(&[rows]), rstd).ok()?,
        })
    } else {
        None
    };
    Some((y, state))
}

/// The input gradient of `y = x̂ · γ (+ β)` given the output gradient `g`, with `h = g ⊙ γ`:
/// LayerNorm `(h − mean(h) − x̂ · mean(h ⊙ x̂)) / σ`, RMSNorm `(h − x̂ · mean(h ⊙ x̂)) / σ`, per
/// row. `None` if the shapes disagree.
///
/// # Shapes
/// - `g`, `xhat`, output: `[.., d]`; `rstd`: `[rows]`; `gamma`: `[d]`
pub(crate) fn backward(
    g: ArrayViewD<'_, f32>,
    xhat: ArrayViewD<'_, f32>,
    rstd: ArrayViewD<'_, f32>,
    gamma: ArrayViewD<'_, f32>,
    kind: NormKind,
) -> Option<ArrayD<f32>> {
    let d = *g.shape().last()?;
    if g.shape() != xhat.shape() || d == 0 {
        return None;
    }
    let (g_s, xh, rs, gamma) = (standard(&g), standard(&xhat), standard(&rstd), standard(&gamma));
    if gamma.len() != d || rs.len() * d != g_s.len() {
        return None;
    }
    let mut dx = vec![0.0f32; g_s.len()];
    let item = rows_per_item(d);
    dx.par_chunks_mut(item * d)
        .zip(g_s.par_chunks(item * d))
        .zip(xh.par_chunks(item * d))
        .zip(rs.par_chunks(item))
        .for_each(|(((dx, g), xh), rs)| {
            for (((dx, g), xh), &inv) in dx.chunks_exact_mut(d).zip(g.chunks_exact(d)).zip(xh.chunks_exact(d)).zip(rs) {
                let (mut sum_h, mut sum_hx) = (0.0f64, 0.0f64);
                for ((&g, &x), &w) in g.iter().zip(xh).zip(gamma.iter()) {
                    let h = (g * w) as f64;
                    sum_h += h;
                    sum_hx += h * x as f64;
                }
                let mean_h = match kind {
                    NormKind::Layer => (sum_h / d as f64) as f32,
                    NormKind::Rms => 0.0,
                };
                let mean_hx = (sum_hx / d as f64) as f32;
                for (((dx, &g), &x), &w) in dx.iter_mut().zip(g).zip(xh).zip(gamma.iter()) {
                    *dx = (g * w - mean_h - x * mean_hx) * inv;
                }
            }
        });
    ArrayD::from_shape_vec(g.raw_dim(), dx).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The norm of one row in f64.
    fn exact(x: &[f64], gamma: &[f64], beta: Option<&[f64]>, kind: NormKind, eps: f64) -> Vec<f64> {
        let d = x.len() as f64;
        let mean = if kind == NormKind::Layer { x.iter().sum::<f64>() / d } else { 0.0 };
        let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / d;
        let s = (var + eps).sqrt();
        x.iter().enumerate().map(|(i, v)| (v - mean) / s * gamma[i] + beta.map_or(0.0, |b| b[i])).collect()
    }

    #[test]
    fn values_and_gradients_match_f64_and_finite_differences() {
        let (rows, d) = (7, 37);
        let x: Vec<f32> = (0..rows * d).map(|i| ((i as f32 * 0.61).sin() * 3.0 + 0.5).round() / 4.0 + 1.0).collect();
        let gamma: Vec<f32> = (0..d).map(|i| 0.5 + (i as f32 * 0.3).cos()).collect();
        let beta: Vec<f32> = (0..d).map(|i| (i as f32 * 0.7).sin()).collect();
        let g: Vec<f32> = (0..rows * d).map(|i| (i as f32 * 0.23).cos()).collect();
        let x64: Vec<f64> = x.iter().map(|&v| v as f64).collect();
        let (g64, b64): (Vec<f64>, Vec<f64>) =
            (gamma.iter().map(|&v| v as f64).collect(), beta.iter().map(|&v| v as f64).collect());
        let view = |v: &[f32], s: &[usize]| ArrayViewD::from_shape(IxDyn(s), v).unwrap().to_owned();
        for kind in [NormKind::Layer, NormKind::Rms] {
            let beta_v = (kind == NormKind::Layer).then(|| view(&beta, &[d]));
            let xs = view(&x, &[1, rows, d]);
            let (y, state) =
                forward(xs.view(), view(&gamma, &[d]).view(), beta_v.as_ref().map(|b| b.view()), kind, 1e-5, true)
                    .unwrap();
            let state = state.unwrap();
            let (untracked, none) =
                forward(xs.view(), view(&gamma, &[d]).view(), beta_v.as_ref().map(|b| b.view()), kind, 1e-5, false)
                    .unwrap();
            assert!(none.is_none());
            assert_eq!(y, untracked, "{kind:?}: keeping the state changed the values");
            let dx = backward(
                view(&g, &[1, rows, d]).view(),
                state.xhat.view(),
                state.rstd.view(),
                view(&gamma, &[d]).view(),
                kind,
            )
            .unwrap();
            let beta_ref = (kind == NormKind::Layer).then_some(&b64[..]);
            let (mut worst_y, mut worst_g) = (0.0f64, 0.0f64);
            for r in 0..rows {
                let row = &x64[r * d..(r + 1) * d];
                let want = exact(row, &g64, beta_ref, kind, 1e-5);
                for i in 0..d {
                    worst_y = worst_y.max((y.as_slice().unwrap()[r * d + i] as f64 - want[i]).abs());
                }
                // Central differences of Σ_i g_i y_i in f64.
                let objective = |row: &[f64]| -> f64 {
                    exact(row, &g64, beta_ref, kind, 1e-5).iter().zip(&g[r * d..]).map(|(y, &g)| y * g as f64).sum()
                };
                for i in 0..d {
                    let (mut up, mut down) = (row.to_vec(), row.to_vec());
                    up[i] += 1e-6;
                    down[i] -= 1e-6;
                    let fd = (objective(&up) - objective(&down)) / 2e-6;
                    worst_g = worst_g.max((dx.as_slice().unwrap()[r * d + i] as f64 - fd).abs() / fd.abs().max(1.0));
                }
            }
            eprintln!("{kind:?}: worst value error {worst_y:.1e}, worst gradient error {worst_g:.1e}");
            assert!(worst_y <= 2e-6, "{kind:?}: values off by {worst_y:e}");
            assert!(worst_g <= 2e-5, "{kind:?}: gradient off by {worst_g:e}");
        }
    }

    #[test]
    fn strided_input_and_mismatched_shapes() {
        let x = ndarray::Array2::from_shape_fn((4, 3), |(i, j)| i as f32 + j as f32 * 0.25);
        let gamma = ndarray::Array1::<f32>::ones(4).into_dyn();
        let (y, _) = forward(x.t().into_dyn(), gamma.view(), None, NormKind::Rms, 0.0, false).unwrap();
        let (y2, _) =
            forward(x.t().to_owned().into_dyn().view(), gamma.view(), None, NormKind::Rms, 0.0, false).unwrap();
        assert_eq!(y, y2);
        let wrong = ndarray::Array1::<f32>::ones(3).into_dyn();
        assert!(forward(x.t().into_dyn(), wrong.view(), None, NormKind::Layer, 1e-5, false).is_none());
    }
}
