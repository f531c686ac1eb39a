//! Dense `a · b` on host arrays with the `gemm` crate's kernels (runtime-dispatched SIMD,
//! multi-threaded on rayon's pool).
//!
//! burn-ndarray's product copies both operands before calling matrixmultiply; here the
//! arrays are read in place, whatever their strides, and on this project's shapes (hundreds
//! of rows times bert/gpt2 weights) `gemm` runs 10-40 % faster than matrixmultiply on 2 cores
//! (measured in session 3; see README "Speed").
#![allow(unsafe_code)]

use std::mem::MaybeUninit;

use ndarray::{Array2, ArrayView2, ArrayViewMut2, ShapeBuilder};

/// Below this many multiply-adds a product runs on one thread.
const PARALLEL_MIN_MACS: usize = 1 << 18;

/// Up to this many rows, a weight read through a transposed view is multiplied into a
/// column-major output (see [`matmul_bias`]). Measured with `bench --kernels`-style products
/// on bert/gpt2 shapes (session 11, the 2-core AVX-512 Xeon): 1.1-1.5× faster at 20 rows
/// counting the pass that turns the output row-major, level at 100-320 rows on `d_ff` outputs
/// and 10-35 % slower from 160 rows on the 30,522- and 50,257-column heads, where that pass
/// over a large output costs more than gemm's gathering of the weight.
const COLUMN_MAJOR_MAX_ROWS: usize = 64;

/// `a · b` as a new row-major array; `None` if the inner dimensions differ.
///
/// # Shapes
/// - `a`: `[m, k]`, `b`: `[k, n]` (any strides); output: `[m, n]`
pub(crate) fn matmul(a: ArrayView2<'_, f32>, b: ArrayView2<'_, f32>) -> Option<Array2<f32>> {
    matmul_bias(a, b, None)
}

/// `a · b + bias` (the bias added to every row) as a new row-major array; `None` if the inner
/// dimensions differ or the bias is not `n` long.
///
/// The output is never zero-filled: without a bias `gemm` writes every element without
/// reading it, and with one each thread first writes the bias into its own block of the
/// output and `gemm` accumulates onto it (`dst = dst + a·b`), so the bias costs no pass of its
/// own (burn-ndarray's broadcast add allocated a second output and filled it on one thread).
///
/// # Shapes
/// - `a`: `[m, k]`, `b`: `[k, n]` (any strides), `bias`: `[n]`; output: `[m, n]`
pub(crate) fn matmul_bias(a: ArrayView2<'_, f32>, b: ArrayView2<'_, f32>, bias: Option<&[f32]>) -> Option<Array2<f32>> {
    let (m, k) = a.dim();
    let (kb, n) = b.dim();
    if k != kb || bias.is_some_and(|v| v.len() != n) {
        return None;
    }
    if m == 0 || n == 0 || k == 0 {
        return Some(match bias {
            Some(v) => Array2::from_shape_fn((m, n), |(_, j)| v[j]),
            None => Array2::zeros((m, n)),
        });
    }
    // A weight read through a transposed view (`b` column-major: `[n, k]` stored) is multiplied
    // into a column-major output when there are few rows: `gemm` then reads the weight in
    // place, one contiguous column per output column, instead of gathering it element by
    // element into its packing buffer (it orients every product by the output's layout). The
    // result is turned row-major in one tiled pass over the (small) output.
    let column_major = b.strides()[0] == 1 && b.strides()[1] != 1 && m > 1 && n > 1 && m <= COLUMN_MAJOR_MAX_ROWS;
    let mut out = if column_major { Array2::uninit((m, n).f()) } else { Array2::uninit((m, n)) };
    let threads = rayon::current_num_threads();
    let big = threads > 1 && m.saturating_mul(n).saturating_mul(k) >= PARALLEL_MIN_MACS;
    // Over the pool: one column block of the output per thread, each a single-threaded
    // product. On this project's shapes that beats the crate's own threading (which splits
    // rows and repacks the weight block per thread) by up to 1.6x on the 20-row products of
    // the target rows and 1.3x on the full-prompt ones (README "Speed", `bench --kernels`).
    let cols = n.div_ceil(threads.max(1)).next_multiple_of(16);
    // A transposed view with more rows than the column-major path takes runs on `gemm`'s
    // microkernels with the weight packed by register transposes, and on AVX2 + FMA so do
    // contiguous weights, packed by row copies (see `super::packed`).
    let by_packed =
        !column_major && m > COLUMN_MAJOR_MAX_ROWS && super::packed::takes(&b) && super::packed::available();
    let block = |b: ArrayView2<'_, f32>, bias: Option<&[f32]>, o: &mut ArrayViewMut2<'_, MaybeUninit<f32>>| {
        if by_packed {
            fill_bias(o, bias);
            super::packed::product(a, b, o, bias.is_some())
        } else {
            product(a, b, bias, o, gemm::Parallelism::None)
        }
    };
    if big && cols < n {
        use rayon::prelude::*;
        let blocks: Vec<_> = out.axis_chunks_iter_mut(ndarray::Axis(1), cols).enumerate().collect();
        let written = blocks.into_par_iter().all(|(i, mut o)| {
            let j0 = i * cols;
            let b = b.slice(ndarray::s![.., j0..j0 + o.ncols()]);
            block(b, bias.map(|v| &v[j0..j0 + o.ncols()]), &mut o)
        });
        if !written {
            return None;
        }
    } else if big {
        if !product(a, b, bias, &mut out.view_mut(), gemm::Parallelism::Rayon(threads)) {
            return None;
        }
    } else if !block(b, bias, &mut out.view_mut()) {
        return None;
    }
    // SAFETY: every element was written: `product` (or `packed::product`, after the bias fill)
    // returned true for every block (the blocks tile the output), so it wrote all of that
    // block's elements, by the microkernels or `gemm` with
    // `read_dst = false` or by the bias fill before an accumulating `gemm`.
    let out = unsafe { out.assume_init() };
    Some(if column_major { row_major(out) } else { out })
}

/// `a · b + bias` for a weight packed once ([`super::packed::Prepacked`]), as a new row-major
/// array; `None` if the inner dimensions differ or the bias is not `n` long. Over the pool by
/// the weight's column blocks when the product is large, each block a single-threaded product
/// onto its bias (as [`matmul_bias`]).
///
/// # Shapes
/// - `a`: `[m, k]` (any strides), `b`: `[k, n]`, `bias`: `[n]`; output: `[m, n]`
pub(crate) fn matmul_prepacked(
    a: ArrayView2<'_, f32>,
    b: &super::packed::Prepacked,
    bias: Option<&[f32]>,
) -> Option<Array2<f32>> {
    let (m, k) = a.dim();
    let (kb, n) = b.dim();
    if k != kb || bias.is_some_and(|v| v.len() != n) {
        return None;
    }
    if m == 0 || n == 0 || k == 0 {
        return Some(Array2::from_shape_fn((m, n), |(_, j)| bias.map_or(0.0, |v| v[j])));
    }
    let mut out = Array2::uninit((m, n));
    let width = b.block_width().max(1);
    let block = |i: usize, mut o: ArrayViewMut2<'_, MaybeUninit<f32>>| {
        let j0 = i * width;
        let bias = bias.map(|v| &v[j0..j0 + o.ncols()]);
        fill_bias(&mut o, bias);
        super::packed::product_prepacked(a, b, i, &mut o, bias.is_some())
    };
    let mut blocks = out.axis_chunks_iter_mut(ndarray::Axis(1), width).enumerate();
    let written = if rayon::current_num_threads() > 1 && m.saturating_mul(n).saturating_mul(k) >= PARALLEL_MIN_MACS {
        use rayon::prelude::*;
        blocks.collect::<Vec<_>>().into_par_iter().all(|(i, o)| block(i, o))
    } else {
        blocks.all(|(i, o)| block(i, o))
    };
    // SAFETY: every block of columns (they tile the output) was written: `product_prepacked`
    // returned true for each, so it wrote all of its elements (onto the bias fill when there
    // is a bias, which wrote them first).
    written.then(|| unsafe { out.assume_init() })
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

/// Writes `bias` into every row of `out` (nothing without one), for a product that then
/// accumulates onto it.
///
/// # Shapes
/// - `out`: `[m, n]` (any strides), `bias`: `[n]`
fn fill_bias(out: &mut ArrayViewMut2<'_, MaybeUninit<f32>>, bias: Option<&[f32]>) {
    let Some(v) = bias else { return };
    // In the output's memory order, so each thread touches its block's pages once, and over
    // contiguous lanes so the copy vectorises (an indexed `Zip` over the elements was 0.7 % of
    // a bert IG run in perf, session 16). Every element is written on each path.
    if out.strides()[0] == 1 && out.strides()[1] != 1 {
        // Column-major: each column is one value (`fill` takes a contiguous column as a slice).
        for (mut col, &b) in out.columns_mut().into_iter().zip(v) {
            col.fill(MaybeUninit::new(b));
        }
    } else {
        // A `Zip` of two contiguous lanes runs over them as slices.
        let v = ndarray::ArrayView1::from(v);
        for row in out.rows_mut() {
            ndarray::Zip::from(row).and(&v).for_each(|o, &b| {
                o.write(b);
            });
        }
    }
}

/// `out = a · b (+ bias)` through the `gemm` crate, every element of `out` written; false
/// (and nothing written) if the shapes disagree.
///
/// # Shapes
/// - `a`: `[m, k]`, `b`: `[k, n]`, `bias`: `[n]`, `out`: `[m, n]` (any strides)
fn product(
    a: ArrayView2<'_, f32>,
    b: ArrayView2<'_, f32>,
    bias: Option<&[f32]>,
    out: &mut ArrayViewMut2<'_, MaybeUninit<f32>>,
    parallelism: gemm::Parallelism,
) -> bool {
    let (m, k) = a.dim();
    let n = b.dim().1;
    if b.dim().0 != k || out.dim() != (m, n) || bias.is_some_and(|v| v.len() != n) {
        return false;
    }
    fill_bias(out, bias);
    let (a_rs, a_cs) = (a.strides()[0], a.strides()[1]);
    let (b_rs, b_cs) = (b.strides()[0], b.strides()[1]);
    let (o_rs, o_cs) = (out.strides()[0], out.strides()[1]);
    let out_ptr = out.as_mut_ptr().cast::<f32>();
    // SAFETY: `a`, `b` and `out` are live views of `m × k`, `k × n` and `m × n` elements (checked
    // above) whose element (i, j) sits at `as_ptr() + i·rs + j·cs` (ndarray's layout contract,
    // also for negative strides); `out` is borrowed mutably, so nothing else reads or writes its
    // elements meanwhile, and it aliases neither input (`matmul_bias` hands it fresh arrays or
    // disjoint column blocks of one); `MaybeUninit<f32>` has `f32`'s layout. Without a bias,
    // `read_dst = false` with beta = 1 computes `out = a·b` and never reads `out` (which may be
    // uninitialised); with one, every element was initialised just above and `read_dst = true`
    // with alpha = beta = 1 computes `out = out + a·b`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out_ptr,
            o_cs,
            o_rs,
            bias.is_some(),
            a.as_ptr(),
            a_cs,
            a_rs,
            b.as_ptr(),
            b_cs,
            b_rs,
            if bias.is_some() { 1.0f32 } else { 0.0f32 },
            1.0f32,
            false,
            false,
            false,
            parallelism,
        );
    }
    true
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
    gflops(m * k * n, min_secs, || matmul(a.view(), rhs))
}

/// GFLOP/s of `product` (`macs` multiply-adds), run once untimed and then timed for at least
/// `min_secs`.
fn gflops(macs: usize, min_secs: f64, mut product: impl FnMut() -> Option<Array2<f32>>) -> f64 {
    let mut sink = 0.0f32;
    let mut run = || {
        if let Some(y) = product() {
            sink += y.first().copied().unwrap_or(0.0);
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
    2.0 * (macs * count) as f64 / start.elapsed().as_secs_f64() / 1e9
}

/// [`product_gflops`] for a weight `[k, n]` packed once ([`super::packed::Prepacked`], as
/// attribution packs the head: stored `[n, k]` with `strided_rhs`, else `[k, n]`); `None` where
/// this CPU has no such product.
pub fn prepacked_product_gflops(m: usize, k: usize, n: usize, strided_rhs: bool, min_secs: f64) -> Option<f64> {
    let a = Array2::from_shape_fn((m, k), |(i, j)| ((i * 7 + j * 13) % 17) as f32 * 0.01);
    // The weight is dropped once packed: the product reads the packed copy only.
    let packed = {
        let b = Array2::from_shape_fn(if strided_rhs { (n, k) } else { (k, n) }, |(i, j)| {
            ((i * 5 + j * 3) % 11) as f32 * 0.01
        });
        super::packed::Prepacked::new(if strided_rhs { b.t() } else { b.view() })?
    };
    Some(gflops(m * k * n, min_secs, || matmul_prepacked(a.view(), &packed, None)))
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

    /// A weight packed once, with and without a bias, serial and over the pool (small and
    /// large products), against a naive product; no rows gives the bias alone.
    #[test]
    fn products_by_a_weight_packed_once_match_a_naive_product() {
        for &(m, k, n) in &[(3, 5, 4), (20, 768, 1100), (65, 90, 80), (1, 300, 700)] {
            let a = filled(m, k, 0.3);
            let stored = filled(n, k, 1.7);
            let Some(packed) = super::super::packed::Prepacked::new(stored.t()) else {
                eprintln!("neither AVX-512F nor AVX2 + FMA here: nothing is packed once");
                return;
            };
            let want = naive(&a, &stored.t().to_owned());
            let bias: Vec<f32> = (0..n).map(|j| j as f32 * 0.25 - 3.0).collect();
            for with_bias in [false, true] {
                let b = with_bias.then_some(bias.as_slice());
                let got = super::matmul_prepacked(a.view(), &packed, b).unwrap();
                let worst = got
                    .indexed_iter()
                    .map(|((i, j), g)| (*g as f64 - want[i * n + j] - b.map_or(0.0, |v| v[j] as f64)).abs())
                    .fold(0.0f64, f64::max);
                eprintln!("packed once {m}x{k}x{n}, bias {with_bias}: max error {worst:e}");
                assert!(worst <= 1e-5 * k as f64, "{m}x{k}x{n}: {worst}");
            }
            assert!(super::matmul_prepacked(filled(m, k + 1, 0.1).view(), &packed, None).is_none());
            assert!(super::matmul_prepacked(a.view(), &packed, Some(&bias[1..])).is_none());
            let none = super::matmul_prepacked(filled(0, k, 0.1).view(), &packed, Some(&bias)).unwrap();
            assert_eq!(none.dim(), (0, n));
        }
    }

    #[test]
    fn products_of_strided_views_match_a_naive_product() {
        // Contiguous, transposed and sliced operands, above and below the parallel threshold.
        for &(m, k, n) in &[(3, 5, 4), (1, 7, 9), (70, 90, 80), (30, 100, 97), (100, 37, 150), (65, 768, 64)] {
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
    fn a_bias_lands_on_every_row_in_both_output_layouts() {
        // Transposed-view weights: column-major output up to 64 rows, row-major above; above
        // and below the parallel threshold (the column blocks get their own bias slices).
        for &(m, k, n, strided) in
            &[(3, 5, 4, false), (20, 90, 300, true), (100, 90, 300, true), (70, 64, 97, false), (1, 7, 9, true)]
        {
            let a = filled(m, k, 0.3);
            let stored = filled(n, k, 1.7);
            let b = if strided { stored.t().to_owned() } else { filled(k, n, 1.7) };
            let rhs = if strided { stored.t() } else { b.view() };
            let bias: Vec<f32> = (0..n).map(|j| (j as f32 * 0.11).cos()).collect();
            let got = super::matmul_bias(a.view(), rhs, Some(&bias)).unwrap();
            assert!(got.is_standard_layout());
            let want = naive(&a, &b);
            let mut worst = 0.0f64;
            for ((i, j), g) in got.indexed_iter() {
                worst = worst.max((*g as f64 - want[i * n + j] - bias[j] as f64).abs());
            }
            eprintln!("matmul_bias {m}x{k}x{n} (strided {strided}): max error {worst:e}");
            assert!(worst <= 1e-5 * k as f64, "{m}x{k}x{n}: {worst}");
            let plain = super::matmul(a.view(), rhs).unwrap();
            assert!(plain.iter().zip(&want).all(|(g, w)| (*g as f64 - w).abs() <= 1e-5 * k as f64));
        }
        let empty =
            super::matmul_bias(Array2::zeros((2, 0)).view(), Array2::zeros((0, 3)).view(), Some(&[1.0, 2.0, 3.0]));
        assert_eq!(empty.unwrap(), ndarray::arr2(&[[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]]), "k = 0 leaves the bias");
        let a = filled(4, 6, 0.1);
        assert!(
            super::matmul_bias(a.view(), filled(6, 5, 0.2).view(), Some(&[0.0; 4])).is_none(),
            "a bias of 4 for 5 columns"
        );
    }

    #[test]
    fn transpose_swaps_rows_and_columns_across_tiles() {
        let a = filled(70, 45, 0.3);
        let t = super::transpose(a.view());
        assert_eq!(t, a.t().to_owned());
        assert_eq!(super::transpose(a.t()), a, "a strided input");
    }
}
