//! Weight products whose weight is a transposed view, blocked as `gemm` blocks them and run on
//! `gemm-f32`'s own microkernels (AVX-512 or AVX2 + FMA, whichever `gemm` itself would pick),
//! with the weight packed here by register transposes; on AVX2 + FMA also contiguous weights
//! (packed by row copies), and full tiles on [`super::tile_fma`]'s kernel.
//!
//! Why by hand: for a right operand stored `[n, k]` and read as `[k, n]` (FFN in forwards, FFN
//! out backwards: 37 % of a bert IG's FLOPs), `gemm` packs each strip of its left operand with a
//! scalar gather (for every `k`, one load from each of the strip's rows; `gemm-common`'s
//! `pack_generic_inner_loop`). Transposing the strip in registers instead and calling the very
//! microkernels `gemm` would call, over the same blocks (`gemm-common`'s `kernel_params`),
//! leaves the arithmetic as it was and only the packing changes. Calling the microkernels one
//! strip at a time through `gemm` itself lost what the packing gained, since each call streams
//! every activation row again (session 17).
#![allow(unsafe_code)]

use std::mem::MaybeUninit;

use gemm_common::microkernel::MicroKernelFn;
use ndarray::{ArrayView2, ArrayViewMut2};

/// Columns of one microkernel tile of the transposed problem (activation rows), on every ISA.
const NR: usize = 6;

/// A full tile's kernel reading the activation rows in place: `(depth, strip, rows, row
/// stride, dst, dst row stride, accumulate)`, as [`super::tile_fma::tile`].
type TileFn = unsafe fn(usize, *const f32, *const f32, usize, *mut f32, usize, bool);

/// One instruction set's microkernels and the register transpose that packs for them.
struct Isa {
    /// f32 lanes of one vector register.
    lanes: usize,
    /// `gemm-f32`'s kernel for a `cols × rows` tile (`1..=`[`Isa::mr`] by `1..=NR`) at
    /// `[cols.div_ceil(lanes) - 1][rows - 1]`.
    kernels: &'static [[MicroKernelFn<f32>; NR]],
    /// The kernel of a full `mr × NR` tile whose activation rows are contiguous, where one
    /// replaces `gemm-f32`'s (same results, bit for bit).
    tile: Option<TileFn>,
    /// Whether contiguous weights run here too (packed by row copies) rather than on `gemm`.
    /// Measured per ISA: on AVX2 + FMA (a 2-core Zen 3), with [`Isa::tile`], a bert-base IG
    /// of one prompt took 2.66 s against 3.01 s on `gemm` (medians of 12 runs, the two
    /// binaries interleaved; session 19); on AVX-512 (Zen 5) packing contiguous weights here
    /// was level with `gemm`'s own driver (session 17), so they stay on it there.
    rows_too: bool,
    /// `dst[c·ldd + r] = src[r·ld + c]` for one `lanes × lanes` block; needs the ISA.
    transpose: unsafe fn(*const f32, usize, *mut f32, usize),
}

impl Isa {
    /// Rows of the largest tile (output columns): one register of `lanes` per kernel row.
    fn mr(&self) -> usize {
        self.kernels.len() * self.lanes
    }
}

/// `gemm-f32`'s AVX-512 microkernels (64 × 6 tiles), packed by 16 × 16 transposes.
#[cfg(target_arch = "x86_64")]
static AVX512: Isa = Isa {
    lanes: 16,
    kernels: &gemm_f32::microkernel::avx512f::f32::UKR,
    tile: None,
    rows_too: false,
    transpose: transpose16,
};

/// `gemm-f32`'s AVX2 + FMA microkernels (16 × 6 tiles), packed by 8 × 8 transposes.
#[cfg(target_arch = "x86_64")]
static FMA: Isa = Isa {
    lanes: 8,
    kernels: &gemm_f32::microkernel::fma::f32::UKR,
    tile: Some(super::tile_fma::tile),
    rows_too: true,
    transpose: transpose8,
};

/// Every ISA this CPU has that [`product`] has kernels for, widest first (the tests run each);
/// none elsewhere than on x86-64.
fn isas() -> impl Iterator<Item = &'static Isa> {
    #[cfg(target_arch = "x86_64")]
    {
        [(std::arch::is_x86_feature_detected!("avx512f"), &AVX512), (super::avx2_fma(), &FMA)]
            .into_iter()
            .filter_map(|(has, isa)| has.then_some(isa))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        std::iter::empty()
    }
}

/// The ISA `gemm` itself picks on this CPU (AVX-512F, else FMA, as `gemm-common`'s dispatch),
/// if it is one [`product`] has kernels for.
fn isa() -> Option<&'static Isa> {
    isas().next()
}

/// Whether this CPU runs [`product`] (AVX-512F, or AVX2 and FMA; detected by `std`).
pub(crate) fn available() -> bool {
    isa().is_some()
}

/// How [`product`] reads a weight `b: [k, n]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// A transposed view: each column contiguous, at a positive column stride (packed by
    /// register transposes).
    Columns,
    /// Contiguous rows at a positive row stride (packed by row copies).
    Rows,
}

/// How `b: [k, n]` is laid out, if it is one of the [`Layout`]s.
fn layout(b: &ArrayView2<'_, f32>) -> Option<Layout> {
    let ((k, n), (rs, cs)) = (b.dim(), (b.strides()[0], b.strides()[1]));
    if k == 0 || n == 0 {
        None
    } else if (rs == 1 || k == 1) && (cs > 0 || n == 1) {
        Some(Layout::Columns)
    } else if (cs == 1 || n == 1) && (rs > 0 || k == 1) {
        Some(Layout::Rows)
    } else {
        None
    }
}

/// Whether [`product`] takes `b: [k, n]` on this CPU: a transposed view ([`Layout::Columns`]),
/// or contiguous rows where the ISA runs those here ([`Isa::rows_too`]).
pub(crate) fn takes(b: &ArrayView2<'_, f32>) -> bool {
    match layout(b) {
        Some(Layout::Columns) => true,
        Some(Layout::Rows) => isa().is_some_and(|isa| isa.rows_too),
        None => false,
    }
}

thread_local! {
    /// Each thread's packed block of the weight, grown to the largest it has needed.
    static PACKED: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// `out = a · b` (with `accumulate`, `out += a · b`) on this thread, `b` a weight [`takes`]
/// takes; false (nothing written) if the shapes disagree, `b` is not such a weight or the CPU
/// has neither AVX-512F nor AVX2 with FMA.
///
/// # Shapes
/// - `a`: `[m, k]` (any strides), `b`: `[k, n]`, `out`: `[m, n]` with contiguous rows
pub(crate) fn product(
    a: ArrayView2<'_, f32>,
    b: ArrayView2<'_, f32>,
    out: &mut ArrayViewMut2<'_, MaybeUninit<f32>>,
    accumulate: bool,
) -> bool {
    isa().is_some_and(|isa| product_on(isa, a, b, out, accumulate))
}

/// [`product`] on the kernels of `isa`, which must be one of [`isas`].
///
/// # Shapes
/// - as [`product`]
fn product_on(
    isa: &Isa,
    a: ArrayView2<'_, f32>,
    b: ArrayView2<'_, f32>,
    out: &mut ArrayViewMut2<'_, MaybeUninit<f32>>,
    accumulate: bool,
) -> bool {
    let (m, k) = a.dim();
    let n = b.dim().1;
    let Some(layout) = layout(&b).filter(|&l| l == Layout::Columns || isa.rows_too) else {
        return false;
    };
    if b.dim().0 != k || out.dim() != (m, n) || (n > 1 && out.strides()[1] != 1) {
        return false;
    }
    if m == 0 {
        return true;
    }
    let mr = isa.mr();
    // The transposed problem `outᵀ = bᵀ · aᵀ`, as `gemm` runs it: `bᵀ` is its left operand
    // (`n` rows, packed `mr` at a time), `aᵀ` its right one (read in place).
    let params = gemm_common::cache::kernel_params(n, m, k, mr, NR, std::mem::size_of::<f32>());
    let (kc, mc) = (params.kc.max(1), params.mc.max(mr) / mr * mr);
    PACKED.with(|cell| {
        let mut buffer = cell.borrow_mut();
        // 64-byte aligned start (the microkernels load whole registers).
        let need = mc * kc + 16;
        if buffer.len() < need {
            buffer.resize(need, 0.0);
        }
        let offset = buffer.as_ptr().align_offset(64).min(16);
        let packed = &mut buffer[offset..offset + mc * kc];
        for p0 in (0..k).step_by(kc) {
            let depth = kc.min(k - p0);
            let alpha_one = accumulate || p0 > 0;
            for c0 in (0..n).step_by(mc) {
                let width = mc.min(n - c0);
                let panels = width.div_ceil(mr);
                for i in 0..panels {
                    let cols = mr.min(width - i * mr);
                    let panel = &mut packed[i * mr * depth..(i + 1) * mr * depth];
                    // SAFETY: `layout` is `b`'s; depths `p0..p0 + depth ≤ k`, columns
                    // `c0 + i·mr .. + cols ≤ n`, `cols ≤ mr`; `panel` holds `mr·depth`
                    // values; `isa` is this CPU's.
                    unsafe { pack_strip(isa, layout, &b, p0, c0 + i * mr, cols, depth, panel) };
                }
                // SAFETY: `packed` holds the block's `panels` strips of `mr·depth` values, just
                // packed; `a` has the depths `p0..p0 + depth` and `out` the columns
                // `c0..c0 + width`; `isa` is this CPU's.
                unsafe { multiply(isa, packed.as_ptr(), depth, width, &a, p0, out, c0, alpha_one) };
            }
        }
        true
    })
}

/// A weight `[k, n]` (a transposed view or contiguous rows, the two [`Layout`]s), packed once
/// and whole into the strips [`product`] packs on every call:
/// per block of `mc` columns (contiguous, `mc·k` values), per block of `kc` depths, the block's
/// strips of `mr` columns, `mr·depth` values each. The blocks are those `gemm`'s
/// `kernel_params` gives the whole width, which depend on `k` and `n` and not on the rows.
///
/// Why: packing a wide weight costs as much as multiplying it by a few rows. The head of a
/// 30,522- or 50,257-token vocabulary multiplies 20-60 target rows once per attribution pass,
/// and packed on every call it ran at 30-35 % of the FMA peak (`bench --kernels`, session 23).
pub(crate) struct Prepacked {
    isa: &'static Isa,
    k: usize,
    n: usize,
    kc: usize,
    mc: usize,
    /// The strips, from `data[start]` (64-byte aligned).
    data: Vec<f32>,
    start: usize,
}

impl std::fmt::Debug for Prepacked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Prepacked {{ k: {}, n: {}, kc: {}, mc: {}, lanes: {} }}",
            self.k, self.n, self.kc, self.mc, self.isa.lanes
        )
    }
}

impl Prepacked {
    /// `b` packed for [`product_prepacked`] (in parallel over column blocks), if this CPU runs
    /// [`product`] and `b` is in one of the [`Layout`]s; `None` otherwise.
    ///
    /// # Shapes
    /// - `b`: `[k, n]`
    pub(crate) fn new(b: ArrayView2<'_, f32>) -> Option<Self> {
        Self::new_on(isa()?, b)
    }

    /// [`Prepacked::new`] for the kernels of `isa`, which must be one of [`isas`].
    fn new_on(isa: &'static Isa, b: ArrayView2<'_, f32>) -> Option<Self> {
        use rayon::prelude::*;
        let layout = layout(&b)?;
        let (k, n) = b.dim();
        let mr = isa.mr();
        let params = gemm_common::cache::kernel_params(n, NR, k, mr, NR, std::mem::size_of::<f32>());
        let (kc, mc) = (params.kc.max(1), params.mc.max(mr) / mr * mr);
        let padded = n.div_ceil(mr) * mr;
        let mut data = vec![0.0f32; padded * k + 16];
        let start = data.as_ptr().align_offset(64).min(16);
        data[start..start + padded * k].par_chunks_mut(mc * k).enumerate().for_each(|(block, values)| {
            let (c0, width) = (block * mc, mc.min(n - block * mc));
            let strips = width.div_ceil(mr);
            for p0 in (0..k).step_by(kc) {
                let depth = kc.min(k - p0);
                for i in 0..strips {
                    let (at, cols) = (p0 * strips * mr + i * mr * depth, mr.min(width - i * mr));
                    let panel = &mut values[at..at + mr * depth];
                    // SAFETY: `layout` is `b`'s; depths `p0..p0 + depth ≤ k`, columns
                    // `c0 + i·mr .. + cols ≤ n`, `cols ≤ mr`; the strip's `mr·depth` values lie
                    // inside this block's `strips·mr·k`; `isa` is this CPU's.
                    unsafe { pack_strip(isa, layout, &b, p0, c0 + i * mr, cols, depth, panel) };
                }
            }
        });
        Some(Prepacked { isa, k, n, kc, mc, data, start })
    }

    /// `[k, n]`.
    pub(crate) fn dim(&self) -> (usize, usize) {
        (self.k, self.n)
    }

    /// Columns of one block: [`product_prepacked`] writes the output in blocks this wide.
    pub(crate) fn block_width(&self) -> usize {
        self.mc
    }
}

/// `out = a · b` (with `accumulate`, `out += a · b`) on this thread, for the columns of
/// column block `block` of a weight packed by [`Prepacked::new`]: `out` holds exactly those
/// columns (`block·mc..`, at most `mc`). False (nothing written) if the shapes disagree.
///
/// The same microkernels over the same depth blocks as [`product`] on the weight itself: the
/// same bits.
///
/// # Shapes
/// - `a`: `[m, k]` (any strides), `out`: `[m, min(mc, n - block·mc)]` with contiguous rows
pub(crate) fn product_prepacked(
    a: ArrayView2<'_, f32>,
    b: &Prepacked,
    block: usize,
    out: &mut ArrayViewMut2<'_, MaybeUninit<f32>>,
    accumulate: bool,
) -> bool {
    let (m, k) = a.dim();
    let c0 = block.saturating_mul(b.mc);
    let width = out.ncols();
    if k != b.k || c0 >= b.n || width != b.mc.min(b.n - c0) || out.nrows() != m || (width > 1 && out.strides()[1] != 1)
    {
        return false;
    }
    let mr = b.isa.mr();
    let strips = width.div_ceil(mr);
    let base = b.start + c0 * k;
    for p0 in (0..k).step_by(b.kc) {
        let depth = b.kc.min(k - p0);
        let at = base + p0 * strips * mr;
        // SAFETY: the block's strips for depths `p0..p0 + depth` start at `at` (as
        // `Prepacked::new` laid them out: `strips` of `mr·depth` values, 64-byte aligned since
        // `start` is and every offset is a multiple of `mr`, itself of 16), inside `data`; `a`
        // has `k` depths and `out` the block's `width` columns and `m` rows; `b.isa` is this
        // CPU's (detected when packing).
        unsafe { multiply(b.isa, b.data.as_ptr().add(at), depth, width, &a, p0, out, 0, accumulate || p0 > 0) };
    }
    true
}

/// `out[.., c0..c0 + width] = a[.., p0..p0 + depth] · strips` (with `alpha_one`, `+=`): one
/// packed block through the microkernels, `NR` activation rows by `mr` columns at a time (full
/// tiles on [`Isa::tile`] where it reads the activations).
///
/// # Safety
/// `panels` holds `width.div_ceil(mr)` strips of `mr·depth` packed values (64-byte aligned);
/// `a` has the depths `p0..p0 + depth`, `out` (contiguous rows) the columns `c0..c0 + width`
/// and `a`'s rows; the CPU has `isa`'s instructions.
#[allow(clippy::too_many_arguments)]
unsafe fn multiply(
    isa: &Isa,
    panels: *const f32,
    depth: usize,
    width: usize,
    a: &ArrayView2<'_, f32>,
    p0: usize,
    out: &mut ArrayViewMut2<'_, MaybeUninit<f32>>,
    c0: usize,
    alpha_one: bool,
) {
    let (m, k) = a.dim();
    let mr = isa.mr();
    let (a_rs, a_cs) = (a.strides()[0], a.strides()[1]);
    let o_rs = out.strides()[0];
    // The full-tile kernel reads the activation rows forwards, contiguous, and writes output
    // rows at a non-negative stride.
    let tile = isa.tile.filter(|_| (a_cs == 1 || k == 1) && a_rs >= 0 && o_rs >= 0);
    let panel_count = width.div_ceil(mr);
    for j0 in (0..m).step_by(NR) {
        let rows = NR.min(m - j0);
        for i in 0..panel_count {
            let cols = mr.min(width - i * mr);
            if let Some(tile) = tile.filter(|_| cols == mr && rows == NR) {
                // SAFETY: the CPU has the kernel's ISA (`isa`); it reads `depth`
                // values of the packed strip (`mr` lanes per step, inside `panels`)
                // and of the activation rows `j0..j0 + NR ≤ m` from depth `p0`
                // (contiguous, `a_rs` apart, inside the view `a`), and writes
                // (reading it first only when `alpha_one`, when it was written
                // before) the full tile of `out` at rows `j0..`, columns
                // `c0 + i·mr..` (`out[r, c]` at `r·o_rs + c`, inside `out`).
                unsafe {
                    tile(
                        depth,
                        panels.add(i * mr * depth),
                        a.as_ptr().offset(j0 as isize * a_rs + p0 as isize * a_cs),
                        a_rs as usize,
                        out.as_mut_ptr().offset(j0 as isize * o_rs + (c0 + i * mr) as isize).cast::<f32>(),
                        o_rs as usize,
                        alpha_one,
                    );
                }
                continue;
            }
            let ukr = isa.kernels[cols.div_ceil(isa.lanes) - 1][rows - 1];
            // SAFETY: the CPU has the ISA the kernel is compiled for (`isa`). It
            // reads `depth` steps of the packed strip (`mr` lanes apart, inside
            // `panels`) and of `aᵀ` (rows `j0..j0 + rows ≤ m`, depths
            // `p0..p0 + depth ≤ k` of the view `a`), and writes (reading it first
            // only when `alpha_one`, when it was written before) the `cols × rows`
            // tile of `outᵀ` at columns `c0 + i·mr..` and rows `j0..`, inside
            // `out` (`out[r, c]` at `r·o_rs + c`).
            unsafe {
                ukr(
                    cols,
                    rows,
                    depth,
                    out.as_mut_ptr().offset(j0 as isize * o_rs + (c0 + i * mr) as isize).cast::<f32>(),
                    panels.add(i * mr * depth),
                    a.as_ptr().offset(j0 as isize * a_rs + p0 as isize * a_cs),
                    o_rs,
                    1,
                    mr as isize,
                    a_cs,
                    a_rs,
                    if alpha_one { 1.0 } else { 0.0 },
                    1.0,
                    u8::from(alpha_one),
                    false,
                    false,
                    false,
                    std::ptr::null(),
                );
            }
        }
    }
}

/// Columns `c..c + cols` of `b`'s depths `p0..p0 + depth` as one microkernel strip in `panel`:
/// by register transposes from a transposed view ([`pack`]), by row copies from contiguous rows
/// ([`pack_rows`]).
///
/// # Safety
/// `layout` must be `b`'s; `p0 + depth ≤ k`, `c + cols ≤ n` for `b: [k, n]`; `cols ≤ isa.mr()`;
/// `panel` holds `isa.mr() · depth` values; the CPU must have `isa`'s instructions.
#[allow(clippy::too_many_arguments)]
unsafe fn pack_strip(
    isa: &Isa,
    layout: Layout,
    b: &ArrayView2<'_, f32>,
    p0: usize,
    c: usize,
    cols: usize,
    depth: usize,
    panel: &mut [f32],
) {
    let (b_rs, b_cs) = (b.strides()[0].max(0) as usize, b.strides()[1].max(0) as usize);
    match layout {
        // SAFETY: `b[p, c]` is at `as_ptr() + p + c·b_cs` (`Layout::Columns`); the strip reads
        // depths `p0..p0 + depth ≤ k` of columns `c..c + cols ≤ n`, as the caller vouches.
        Layout::Columns => unsafe { pack(isa, b.as_ptr().add(c * b_cs + p0), b_cs, cols, depth, panel) },
        // SAFETY: `b[p, c]` at `as_ptr() + p·b_rs + c` (`Layout::Rows`); the strip reads rows
        // `p0..p0 + depth ≤ k`, columns `c..c + cols ≤ n`.
        Layout::Rows => unsafe { pack_rows(b.as_ptr().add(p0 * b_rs + c), b_rs, cols, depth, panel) },
    }
}

/// `panel[p·mr + c] = src[c·cs + p]` for `c < cols`, `p < depth`: a strip of a transposed view
/// as a microkernel panel, in `lanes × lanes` register transposes (element by element at the
/// edges).
///
/// # Safety
/// `src` must be readable at `c·cs + p` for `c < cols`, `p < depth`; `panel` holds at least
/// `depth · isa.mr()` values; `cols ≤ isa.mr()`; the CPU must have `isa`'s instructions.
unsafe fn pack(isa: &Isa, src: *const f32, cs: usize, cols: usize, depth: usize, panel: &mut [f32]) {
    let (l, mr) = (isa.lanes, isa.mr());
    let (full_cols, full_depth) = (cols / l * l, depth / l * l);
    let dst = panel.as_mut_ptr();
    for c0 in (0..full_cols).step_by(l) {
        for p0 in (0..full_depth).step_by(l) {
            // SAFETY: inside the block the caller vouches for (`c0 + l ≤ cols`,
            // `p0 + l ≤ depth`), and inside `panel` (`(p0 + l - 1)·mr + c0 + l ≤ depth·mr`).
            unsafe { (isa.transpose)(src.add(c0 * cs + p0), cs, dst.add(p0 * mr + c0), mr) };
        }
    }
    for c in 0..cols {
        let from = if c < full_cols { full_depth } else { 0 };
        for p in from..depth {
            // SAFETY: as above, element by element.
            unsafe { *dst.add(p * mr + c) = *src.add(c * cs + p) };
        }
    }
}

/// `panel[p·mr + c] = src[p·rs + c]` for `c < cols`, `p < depth` (`mr = panel.len() / depth`):
/// a strip of contiguous weight rows as a microkernel panel, one row piece copied per step.
///
/// # Safety
/// `src` must be readable at `p·rs + c` for `c < cols`, `p < depth`; `cols ≤ mr`.
unsafe fn pack_rows(src: *const f32, rs: usize, cols: usize, depth: usize, panel: &mut [f32]) {
    let mr = panel.len() / depth.max(1);
    for (p, dst) in panel.chunks_exact_mut(mr).enumerate() {
        // SAFETY: row `p < depth` of the strip, `cols ≤ mr` values (the caller's block).
        let row = unsafe { std::slice::from_raw_parts(src.add(p * rs), cols) };
        if let (Some(d), Ok(r)) = (dst.first_chunk_mut::<16>(), <&[f32; 16]>::try_from(row)) {
            // The full strip of the AVX2 kernels: one fixed-size copy (two vector moves).
            *d = *r;
        } else {
            dst[..cols].copy_from_slice(row);
        }
    }
}

/// `dst[c·ldd + r] = src[r·ld + c]` for an 8 × 8 block: 8 loads, 24 shuffles, 8 stores.
///
/// # Safety
/// AVX must be present; `src` readable at `r·ld + c` and `dst` writable at `c·ldd + r` for
/// `r, c < 8`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
unsafe fn transpose8(src: *const f32, ld: usize, dst: *mut f32, ldd: usize) {
    use std::arch::x86_64::*;
    // SAFETY (every load and store below): inside the 8 × 8 block the caller vouches for.
    let row = |i: usize| unsafe { _mm256_loadu_ps(src.add(i * ld)) };
    // a[2i], a[2i+1]: rows 2i and 2i+1 interleaved within each 128-bit lane.
    let mut a = [_mm256_setzero_ps(); 8];
    for i in 0..4 {
        let (x, y) = (row(2 * i), row(2 * i + 1));
        a[2 * i] = _mm256_unpacklo_ps(x, y);
        a[2 * i + 1] = _mm256_unpackhi_ps(x, y);
    }
    // b[4j + c], lane L (of 2): rows 4j..4j+3 at column 4L + c.
    let mut b = [_mm256_setzero_ps(); 8];
    for j in 0..2 {
        b[4 * j] = _mm256_shuffle_ps::<0x44>(a[4 * j], a[4 * j + 2]);
        b[4 * j + 1] = _mm256_shuffle_ps::<0xEE>(a[4 * j], a[4 * j + 2]);
        b[4 * j + 2] = _mm256_shuffle_ps::<0x44>(a[4 * j + 1], a[4 * j + 3]);
        b[4 * j + 3] = _mm256_shuffle_ps::<0xEE>(a[4 * j + 1], a[4 * j + 3]);
    }
    // Output row 4L + c: lane L of b[c] (rows 0..4), then lane L of b[4 + c] (rows 4..8).
    for c in 0..4 {
        unsafe {
            _mm256_storeu_ps(dst.add(c * ldd), _mm256_permute2f128_ps::<0x20>(b[c], b[4 + c]));
            _mm256_storeu_ps(dst.add((4 + c) * ldd), _mm256_permute2f128_ps::<0x31>(b[c], b[4 + c]));
        }
    }
}

/// `dst[c·ldd + r] = src[r·ld + c]` for a 16 × 16 block: 16 loads, 64 shuffles, 16 stores.
///
/// # Safety
/// AVX-512F must be present; `src` readable at `r·ld + c` and `dst` writable at `c·ldd + r`
/// for `r, c < 16`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn transpose16(src: *const f32, ld: usize, dst: *mut f32, ldd: usize) {
    use std::arch::x86_64::*;
    // SAFETY (every load and store below): inside the 16 × 16 blocks the caller vouches for.
    let row = |i: usize| unsafe { _mm512_loadu_ps(src.add(i * ld)) };
    // a[2i], a[2i+1]: rows 2i and 2i+1 interleaved within each 128-bit lane.
    let mut a = [_mm512_setzero_ps(); 16];
    for i in 0..8 {
        let (x, y) = (row(2 * i), row(2 * i + 1));
        a[2 * i] = _mm512_unpacklo_ps(x, y);
        a[2 * i + 1] = _mm512_unpackhi_ps(x, y);
    }
    // b[4j + c], lane L: rows 4j..4j+3 at column 4L + c.
    let mut b = [_mm512_setzero_ps(); 16];
    for j in 0..4 {
        b[4 * j] = _mm512_shuffle_ps::<0x44>(a[4 * j], a[4 * j + 2]);
        b[4 * j + 1] = _mm512_shuffle_ps::<0xEE>(a[4 * j], a[4 * j + 2]);
        b[4 * j + 2] = _mm512_shuffle_ps::<0x44>(a[4 * j + 1], a[4 * j + 3]);
        b[4 * j + 3] = _mm512_shuffle_ps::<0xEE>(a[4 * j + 1], a[4 * j + 3]);
    }
    // Output row 4L + c gathers lane L of b[c], b[4 + c], b[8 + c], b[12 + c].
    for c in 0..4 {
        let u0 = _mm512_shuffle_f32x4::<0x44>(b[c], b[4 + c]);
        let u1 = _mm512_shuffle_f32x4::<0xEE>(b[c], b[4 + c]);
        let v0 = _mm512_shuffle_f32x4::<0x44>(b[8 + c], b[12 + c]);
        let v1 = _mm512_shuffle_f32x4::<0xEE>(b[8 + c], b[12 + c]);
        unsafe {
            _mm512_storeu_ps(dst.add(c * ldd), _mm512_shuffle_f32x4::<0x88>(u0, v0));
            _mm512_storeu_ps(dst.add((4 + c) * ldd), _mm512_shuffle_f32x4::<0xDD>(u0, v0));
            _mm512_storeu_ps(dst.add((8 + c) * ldd), _mm512_shuffle_f32x4::<0x88>(u1, v1));
            _mm512_storeu_ps(dst.add((12 + c) * ldd), _mm512_shuffle_f32x4::<0xDD>(u1, v1));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::mem::MaybeUninit;

    use ndarray::{s, Array2};

    fn naive(a: &Array2<f32>, b: &ndarray::ArrayView2<'_, f32>) -> Array2<f64> {
        let (m, k) = a.dim();
        let n = b.dim().1;
        Array2::from_shape_fn((m, n), |(i, j)| (0..k).map(|p| a[[i, p]] as f64 * b[[p, j]] as f64).sum())
    }

    /// `[m, k]` activations with a padded row stride (`k + 5`), contiguous along `k`.
    fn activations(m: usize, k: usize) -> Array2<f32> {
        Array2::from_shape_fn((m, k + 5), |(i, p)| ((i * 31 + p * 7) % 23) as f32 * 0.1 - 1.1)
    }

    /// A `[k, n]` weight in each layout [`super::product`] reads: a transposed view of a
    /// `[n, k + 3]` array, and contiguous rows of a `[k, n + 3]` array (padded strides both).
    fn weights(k: usize, n: usize) -> [(super::Layout, Array2<f32>); 2] {
        let value = |p: usize, j: usize| ((j * 13 + p * 5) % 19) as f32 * 0.1 - 0.9;
        [
            (super::Layout::Columns, Array2::from_shape_fn((n, k + 3), |(j, p)| value(p, j))),
            (super::Layout::Rows, Array2::from_shape_fn((k, n + 3), |(p, j)| value(p, j))),
        ]
    }

    fn view(layout: super::Layout, stored: &Array2<f32>, k: usize, n: usize) -> ndarray::ArrayView2<'_, f32> {
        match layout {
            super::Layout::Columns => stored.slice(s![.., ..k]).reversed_axes(),
            super::Layout::Rows => stored.slice(s![.., ..n]),
        }
    }

    #[test]
    fn products_match_a_naive_product_over_ragged_blocks_and_depths() {
        let isas: Vec<_> = super::isas().collect();
        assert_eq!(super::available(), !isas.is_empty());
        if isas.is_empty() {
            eprintln!("neither AVX-512F nor AVX2 + FMA here: packed::product refuses (tested below) and gemm runs");
        }
        // Ragged tiles (m % 6), ragged strips (n % 64, n % 16, n % 8), depths over one block
        // and with a tail (k % 16, k % 8, k % 4), padded weight and activation strides, and
        // activations read with a column stride (no full-tile kernel then).
        let shapes = [
            (7, 5, 3),
            (13, 70, 130),
            (100, 768, 200),
            (6, 1030, 64),
            (65, 33, 517),
            (1, 16, 16),
            (9, 21, 23),
            (12, 2051, 48),
        ];
        for &(m, k, n) in &shapes {
            let a_full = activations(m, 2 * k);
            for (a, a_label) in
                [(a_full.slice(s![.., ..k]), "contiguous"), (a_full.slice(s![.., ..2 * k;2]), "column stride 2")]
            {
                let a_owned = a.to_owned();
                for (layout, stored) in weights(k, n) {
                    let b = view(layout, &stored, k, n);
                    let want = naive(&a_owned, &b);
                    for accumulate in [false, true] {
                        let takes = super::takes(&b);
                        let mut out = Array2::from_elem((m, n), MaybeUninit::new(0.5f32));
                        assert_eq!(super::product(a, b, &mut out.view_mut(), accumulate), super::available() && takes);
                        for isa in &isas {
                            let mut out = Array2::from_elem((m, n), MaybeUninit::new(0.5f32));
                            let ran = super::product_on(isa, a, b, &mut out.view_mut(), accumulate);
                            assert_eq!(ran, layout == super::Layout::Columns || isa.rows_too, "{m}x{k}x{n} {layout:?}");
                            if !ran {
                                continue;
                            }
                            let got = unsafe { out.assume_init() };
                            let mut worst = 0.0f64;
                            for ((i, j), g) in got.indexed_iter() {
                                let w = want[[i, j]] + if accumulate { 0.5 } else { 0.0 };
                                worst = worst.max((*g as f64 - w).abs());
                            }
                            let lanes = isa.lanes;
                            eprintln!(
                                "packed {m}x{k}x{n}, {lanes} lanes, {layout:?} weight, {a_label} activations \
                                 (accumulate {accumulate}): max error {worst:e}"
                            );
                            assert!(worst <= 1e-5 * k as f64, "{m}x{k}x{n}, {lanes} lanes, {layout:?}: {worst}");
                        }
                    }
                }
            }
        }
        let a = Array2::<f32>::zeros((4, 8));
        let stored = Array2::<f32>::zeros((5, 8));
        let mut out = Array2::from_elem((4, 5), MaybeUninit::new(0.0f32));
        assert!(!super::product(
            a.view(),
            stored.view().reversed_axes().slice_move(s![..7, ..]),
            &mut out.view_mut(),
            false
        ));
        let neither = Array2::<f32>::zeros((16, 10));
        assert!(
            !super::product(a.view(), neither.slice(s![..;2, ..;2]), &mut out.view_mut(), false),
            "a weight strided both ways"
        );
    }

    /// A weight packed once, in either layout, gives the bits [`super::product`] gives packing
    /// it on every call, column block by column block, over ragged strips, row tiles and depth
    /// blocks, contiguous and strided activations, with and without accumulating; an output
    /// block of the wrong width is refused.
    #[test]
    fn a_weight_packed_once_gives_the_bits_of_packing_per_product() {
        if super::isa().is_none() {
            let stored = Array2::<f32>::zeros((5, 8));
            assert!(super::Prepacked::new(stored.t()).is_none());
            eprintln!("neither AVX-512F nor AVX2 + FMA here: nothing is packed once");
        }
        for isa in super::isas() {
            packed_once_on(isa);
        }
    }

    fn packed_once_on(isa: &'static super::Isa) {
        let shapes =
            [(7, 5, 3), (13, 70, 130), (20, 768, 1100), (1, 16, 16), (9, 21, 23), (12, 2051, 48), (65, 33, 517)];
        // Contiguous rows against `product` on the same kernels packing them per call.
        let rows_too = super::Isa { rows_too: true, ..*isa };
        for &(m, k, n) in &shapes {
            for (layout, stored) in weights(k, n) {
                let b = view(layout, &stored, k, n);
                let packed = super::Prepacked::new_on(isa, b).expect("both layouts are packed");
                assert_eq!(packed.dim(), (k, n));
                let isa = &rows_too;
                let width = packed.block_width();
                let a_full = activations(m, 2 * k);
                for a in [a_full.slice(s![.., ..k]), a_full.slice(s![.., ..2 * k;2])] {
                    for accumulate in [false, true] {
                        let mut want = Array2::from_elem((m, n), MaybeUninit::new(0.5f32));
                        assert!(super::product_on(isa, a, b, &mut want.view_mut(), accumulate));
                        let mut got = Array2::from_elem((m, n), MaybeUninit::new(0.5f32));
                        for (i, mut o) in got.axis_chunks_iter_mut(ndarray::Axis(1), width).enumerate() {
                            assert!(
                                super::product_prepacked(a, &packed, i, &mut o, accumulate),
                                "{m}x{k}x{n} block {i}"
                            );
                        }
                        let bits = |x: Array2<MaybeUninit<f32>>| unsafe { x.assume_init() }.mapv(f32::to_bits);
                        assert_eq!(bits(got), bits(want), "{m}x{k}x{n}, {} lanes, accumulate {accumulate}", isa.lanes);
                    }
                }
                let mut wrong = Array2::from_elem((m, width.min(n) + 1), MaybeUninit::new(0.0f32));
                assert!(!super::product_prepacked(a_full.slice(s![.., ..k]), &packed, 0, &mut wrong.view_mut(), false));
                let mut past = Array2::from_elem((m, 1), MaybeUninit::new(0.0f32));
                assert!(!super::product_prepacked(
                    a_full.slice(s![.., ..k]),
                    &packed,
                    n.div_ceil(width),
                    &mut past.view_mut(),
                    false
                ));
            }
        }
    }

    /// The full-tile kernel changes no bit of any product: the same products with `gemm-f32`'s
    /// kernels alone, on tiles full and ragged, over several depth blocks.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_full_tile_kernel_gives_gemm_f32s_bits() {
        if !super::super::avx2_fma() {
            eprintln!("no AVX2 + FMA here: the full-tile kernel never runs");
            return;
        }
        let plain = super::Isa { tile: None, ..super::FMA };
        for &(m, k, n) in &[(18, 768, 64), (100, 2051, 200), (13, 70, 130)] {
            let a_full = activations(m, k);
            let a = a_full.slice(s![.., ..k]);
            for (layout, stored) in weights(k, n) {
                let b = view(layout, &stored, k, n);
                for accumulate in [false, true] {
                    let run = |isa: &super::Isa| {
                        let mut out = Array2::from_elem((m, n), MaybeUninit::new(0.5f32));
                        assert!(super::product_on(isa, a, b, &mut out.view_mut(), accumulate));
                        unsafe { out.assume_init() }.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
                    };
                    assert_eq!(run(&super::FMA), run(&plain), "{m}x{k}x{n} {layout:?} accumulate {accumulate}");
                }
            }
        }
    }
}
