//! Dense `a · b` on host arrays with the `gemm` crate's kernels (runtime-dispatched SIMD,
//! multi-threaded on rayon's pool).
//!
//! burn-ndarray's product copies both operands before calling matrixmultiply; here the
//! arrays are read in place, whatever their strides, and on this project's shapes (hundreds
//! of rows times bert/gpt2 weights) `gemm` runs 10-40 % faster than matrixmultiply on 2 cores
//! (measured in session 3; see README "Speed").
#![allow(unsafe_code)]

use ndarray::{Array2, ArrayView2, ArrayViewMut2, ShapeBuilder};

/// Below this many multiply-adds a product runs on one thread.
const PARALLEL_MIN_MACS: usize = 1 << 18;

/// `a · b` as a new row-major array; `None` if the inner dimensions differ.
///
/// # Shapes
/// - `a`: `[m, k]`, `b`: `[k, n]` (any strides); output: `[m, n]`
pub(crate) fn matmul(a: ArrayView2<'_, f32>, b: ArrayView2<'_, f32>) -> Option<Array2<f32>> {
    let (m, k) = a.dim();
    let (kb, n) = b.dim();
    if k != kb {
        return None;
    }
    // A weight read through a transposed view (`b` column-major: `[n, k]` stored) is multiplied
    // into a column-major output: `gemm` then reads the weight in place, one contiguous column
    // per output column, instead of gathering it element by element into its packing buffer
    // (it orients every product by the output's layout). The result is turned row-major in one
    // tiled pass over the (small) output.
    let column_major = b.strides()[0] == 1 && b.strides()[1] != 1 && m > 1 && n > 1;
    let mut out = if column_major { Array2::<f32>::zeros((m, n).f()) } else { Array2::<f32>::zeros((m, n)) };
    if m == 0 || n == 0 || k == 0 {
        return Some(out);
    }
    let threads = rayon::current_num_threads();
    let big = threads > 1 && m.saturating_mul(n).saturating_mul(k) >= PARALLEL_MIN_MACS;
    // Over the pool: one column block of the output per thread, each a single-threaded
    // product. On this project's shapes that beats the crate's own threading (which splits
    // rows and repacks the weight block per thread) by up to 1.6x on the 20-row products of
    // the target rows and 1.3x on the full-prompt ones (README "Speed", `bench --kernels`).
    let cols = n.div_ceil(threads.max(1)).next_multiple_of(16);
    if big && cols < n {
        use rayon::prelude::*;
        let blocks: Vec<_> = out.axis_chunks_iter_mut(ndarray::Axis(1), cols).enumerate().collect();
        blocks.into_par_iter().for_each(|(i, mut o)| {
            let b = b.slice(ndarray::s![.., i * cols..i * cols + o.ncols()]);
            product(a, b, &mut o, gemm::Parallelism::None);
        });
    } else {
        let parallelism = if big { gemm::Parallelism::Rayon(threads) } else { gemm::Parallelism::None };
        product(a, b, &mut out.view_mut(), parallelism);
    }
    Some(if column_major { row_major(out) } else { out })
}

/// A column-major array in row-major order ([`crate::weights::transpose_slice`] of its
/// memory: tiled, in parallel).
fn row_major(a: Array2<f32>) -> Array2<f32> {
    let (m, n) = a.dim();
    match a.as_slice_memory_order() {
        Some(mem) => Array2::from_shape_vec((m, n), crate::weights::transpose_slice(mem, n, m))
            .unwrap_or_else(|_| a.as_standard_layout().into_owned()),
        None => a.as_standard_layout().into_owned(),
    }
}

/// `out = a · b` through the `gemm` crate.
fn product(
    a: ArrayView2<'_, f32>,
    b: ArrayView2<'_, f32>,
    out: &mut ArrayViewMut2<'_, f32>,
    parallelism: gemm::Parallelism,
) {
    let (m, k) = a.dim();
    let n = b.dim().1;
    if b.dim().0 != k || out.dim() != (m, n) {
        return;
    }
    let (a_rs, a_cs) = (a.strides()[0], a.strides()[1]);
    let (b_rs, b_cs) = (b.strides()[0], b.strides()[1]);
    let (o_rs, o_cs) = (out.strides()[0], out.strides()[1]);
    let out_ptr = out.as_mut_ptr();
    // SAFETY: `a`, `b` and `out` are live views of `m × k`, `k × n` and `m × n` elements (checked
    // above) whose element (i, j) sits at `as_ptr() + i·rs + j·cs` (ndarray's layout contract,
    // also for negative strides); `out` is borrowed mutably, so nothing else reads or writes its
    // elements meanwhile, and it aliases neither input (`matmul` hands it fresh arrays or
    // disjoint column blocks of one). `read_dst = false` with beta = 1 computes `out = a·b`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out_ptr,
            o_cs,
            o_rs,
            false,
            a.as_ptr(),
            a_cs,
            a_rs,
            b.as_ptr(),
            b_cs,
            b_rs,
            0.0f32,
            1.0f32,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// `aᵀ` as a new row-major array ([`crate::weights::transpose_slice`]: tiled, in parallel).
///
/// # Shapes
/// - `a`: `[r, c]` (any strides); output: `[c, r]`
pub(crate) fn transpose(a: ArrayView2<'_, f32>) -> Array2<f32> {
    let (r, c) = a.dim();
    let owned;
    let src: &[f32] = match a.as_slice() {
        Some(s) => s,
        None => {
            owned = a.as_standard_layout().into_owned();
            owned.as_slice().unwrap_or(&[])
        }
    };
    let dst = crate::weights::transpose_slice(src, r, c);
    Array2::from_shape_vec((c, r), dst).unwrap_or_else(|_| Array2::zeros((c, r)))
}

/// GFLOP/s of the weight product `[m, k] · [k, n]` on random operands, as the ndarray build
/// runs it (the right operand contiguous, or a transposed view of a `[n, k]` array when
/// `strided_rhs`), over at least `min_secs` after a warm-up product: for `kn-cli bench
/// --kernels`, which prints it beside the CPU's measured FMA peak.
pub fn product_gflops(m: usize, k: usize, n: usize, strided_rhs: bool, min_secs: f64) -> f64 {
    let a = Array2::from_shape_fn((m, k), |(i, j)| ((i * 7 + j * 13) % 17) as f32 * 0.01);
    let b =
        Array2::from_shape_fn(if strided_rhs { (n, k) } else { (k, n) }, |(i, j)| ((i * 5 + j * 3) % 11) as f32 * 0.01);
    let rhs = if strided_rhs { b.t() } else { b.view() };
    let mut sink = 0.0f32;
    let mut run = || {
        if let Some(y) = matmul(a.view(), rhs) {
            sink += y[[0, 0]];
        }
    };
    run();
    let start = std::time::Instant::now();
    let mut count = 0usize;
    while count == 0 || start.elapsed().as_secs_f64() < min_secs {
        run();
        count += 1;
    }
    std::hint::black_box(sink);
    2.0 * (m * k * n * count) as f64 / start.elapsed().as_secs_f64() / 1e9
}

#[cfg(test)]
mod tests {
    use ndarray::{s, Array2};

    fn naive(a: &Array2<f32>, b: &Array2<f32>) -> Vec<f64> {
        let (m, k) = a.dim();
        let n = b.dim().1;
        let mut out = vec![0.0f64; m * n];
        for i in 0..m {
            for j in 0..n {
                out[i * n + j] = (0..k).map(|p| a[[i, p]] as f64 * b[[p, j]] as f64).sum();
            }
        }
        out
    }

    fn filled(m: usize, n: usize, seed: f32) -> Array2<f32> {
        Array2::from_shape_fn((m, n), |(i, j)| ((i * n + j) as f32 * 0.37 + seed).sin())
    }

    #[test]
    fn products_of_strided_views_match_a_naive_product() {
        // Contiguous, transposed and sliced operands, above and below the parallel threshold.
        for &(m, k, n) in &[(3, 5, 4), (1, 7, 9), (70, 90, 80), (30, 100, 97)] {
            let a = filled(m, k, 0.3);
            let b = filled(k, n, 1.7);
            let bt = filled(n, k, 1.7).t().to_owned();
            let expected_t = naive(&a, &bt);
            let expected = naive(&a, &b);
            let cases = [
                (super::matmul(a.view(), b.view()), &expected),
                (super::matmul(a.view(), filled(n, k, 1.7).t()), &expected_t),
                (super::matmul(a.t().to_owned().t(), b.view()), &expected),
            ];
            for (got, want) in cases {
                let got = got.unwrap();
                assert_eq!(got.dim(), (m, n));
                for (g, w) in got.iter().zip(want.iter()) {
                    assert!((*g as f64 - w).abs() <= 1e-5 * (k as f64), "{m}x{k}x{n}: {g} vs {w}");
                }
            }
        }
        let a = filled(6, 8, 0.1);
        let b = filled(8, 10, 0.2);
        let sub = super::matmul(a.slice(s![1..5;2, ..]), b.slice(s![.., 3..7])).unwrap();
        let full = naive(&a, &b);
        for i in 0..2 {
            for j in 0..4 {
                let w = full[(1 + 2 * i) * 10 + 3 + j];
                assert!((sub[[i, j]] as f64 - w).abs() <= 1e-5, "{} vs {w}", sub[[i, j]]);
            }
        }
        assert!(super::matmul(a.view(), a.view()).is_none(), "6x8 · 6x8 must be refused");
    }

    #[test]
    fn transpose_swaps_rows_and_columns_across_tiles() {
        let a = filled(70, 45, 0.3);
        let t = super::transpose(a.view());
        assert_eq!(t, a.t().to_owned());
        assert_eq!(super::transpose(a.t()), a, "a strided input");
    }
}
