//! Log-softmax over the vocabulary for the ndarray build: one multi-threaded pass per row for
//! the values and one for the gradient, instead of the dozen single-threaded, allocating burn
//! ops (and their backward steps) that composing it costs; over a 50k vocabulary and a few
//! hundred rows that composition was a sixth of a gpt2 attribution.
//!
//! The normaliser `Σ exp(x − max)` is summed in blocks of [`BLOCK`] columns and then over the
//! blocks, as `kn_core::predict::log_softmax` does (accumulating a 49,152-column row in order
//! in f32 costs 1.4e-4 relative on SmolLM2's probabilities).

use ndarray::{ArrayD, ArrayViewD};
use rayon::prelude::*;

use super::fused::exp;

/// Columns per partial sum of the normaliser.
const BLOCK: usize = 1024;

/// Rows per parallel work item (at least one).
fn rows_per_item(width: usize) -> usize {
    ((1 << 15) / width.max(1)).max(1)
}

/// `x` as a row-major slice (copied only when it is not one already).
fn standard<'a>(x: &'a ArrayViewD<'_, f32>) -> std::borrow::Cow<'a, [f32]> {
    match x.as_slice() {
        Some(s) => std::borrow::Cow::Borrowed(s),
        None => std::borrow::Cow::Owned(x.iter().copied().collect()),
    }
}

/// `log softmax(x)` over the last axis, as a new row-major array of `x`'s shape (`None` for a
/// 0-d input or a shape ndarray refuses).
///
/// # Shapes
/// - `x`, output: `[.., vocab]`
pub(crate) fn log_softmax(x: ArrayViewD<'_, f32>) -> Option<ArrayD<f32>> {
    let width = *x.shape().last()?;
    let shape = x.raw_dim();
    let input = standard(&x);
    let mut y = vec![0.0f32; input.len()];
    if width > 0 {
        let item = rows_per_item(width) * width;
        y.par_chunks_mut(item).zip(input.par_chunks(item)).for_each(|(y, x)| {
            for (y, x) in y.chunks_exact_mut(width).zip(x.chunks_exact(width)) {
                let max = x.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
                let mut total = 0.0f32;
                for block in x.chunks(BLOCK) {
                    total += block.iter().map(|&v| exp(v - max)).sum::<f32>();
                }
                let shift = max + total.ln();
                for (y, &x) in y.iter_mut().zip(x) {
                    *y = x - shift;
                }
            }
        });
    }
    ArrayD::from_shape_vec(shape, y).ok()
}

/// The input gradient of `y = log softmax(x)`: `g − exp(y) · Σ g` over each row.
///
/// # Shapes
/// - `y`, `g`, output: `[.., vocab]`
pub(crate) fn log_softmax_backward(y: ArrayViewD<'_, f32>, g: ArrayViewD<'_, f32>) -> Option<ArrayD<f32>> {
    if y.shape() != g.shape() {
        return None;
    }
    let width = *y.shape().last()?;
    let shape = y.raw_dim();
    let (ys, gs) = (standard(&y), standard(&g));
    let mut out = vec![0.0f32; ys.len()];
    if width > 0 {
        let item = rows_per_item(width) * width;
        out.par_chunks_mut(item).zip(ys.par_chunks(item)).zip(gs.par_chunks(item)).for_each(|((o, y), g)| {
            for ((o, y), g) in o.chunks_exact_mut(width).zip(y.chunks_exact(width)).zip(g.chunks_exact(width)) {
                let total: f32 = g.chunks(BLOCK).map(|b| b.iter().sum::<f32>()).sum();
                for ((o, &y), &g) in o.iter_mut().zip(y).zip(g) {
                    *o = g - exp(y) * total;
                }
            }
        });
    }
    ArrayD::from_shape_vec(shape, out).ok()
}

#[cfg(test)]
mod tests {
    use ndarray::{ArrayD, IxDyn};

    #[test]
    fn values_and_gradient_match_f64() {
        let (rows, v) = (5, 3 * super::BLOCK + 77);
        let x = ArrayD::from_shape_fn(IxDyn(&[1, rows, v]), |i| ((i[1] * v + i[2]) as f32 * 0.377).sin() * 9.0);
        let g = ArrayD::from_shape_fn(IxDyn(&[1, rows, v]), |i| ((i[1] * 7 + i[2] * 3) % 13) as f32 * 0.1 - 0.6);
        let y = super::log_softmax(x.view()).unwrap();
        let dx = super::log_softmax_backward(y.view(), g.view()).unwrap();
        let (mut worst, mut worst_grad) = (0.0f64, 0.0f64);
        for r in 0..rows {
            let row: Vec<f64> = (0..v).map(|j| x[[0, r, j]] as f64).collect();
            let max = row.iter().cloned().fold(f64::MIN, f64::max);
            let lse = max + row.iter().map(|&a| (a - max).exp()).sum::<f64>().ln();
            let gsum: f64 = (0..v).map(|j| g[[0, r, j]] as f64).sum();
            for j in 0..v {
                worst = worst.max((y[[0, r, j]] as f64 - (row[j] - lse)).abs());
                let want = g[[0, r, j]] as f64 - (row[j] - lse).exp() * gsum;
                worst_grad = worst_grad.max((dx[[0, r, j]] as f64 - want).abs());
            }
        }
        println!("fused log_softmax vs f64: values {worst:.1e}, gradient {worst_grad:.1e}");
        assert!(worst < 2e-6, "{worst}");
        assert!(worst_grad < 1e-6, "{worst_grad}");
    }
}
