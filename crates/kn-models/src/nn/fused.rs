//! Fused element-wise kernels for the ndarray build: an activation and its derivative in one
//! multi-threaded pass over the array, instead of the five to ten single-threaded passes (each
//! allocating) that composing it from burn's primitives and differentiating them costs.
//!
//! The functions are branch-free polynomial forms (`exp` by Cody–Waite and Cephes, `erf` by
//! Abramowitz & Stegun 7.1.26 as in PyTorch's vectorised CPU kernels), so the loops compile to
//! 8-lane AVX2 code, or 16-lane AVX-512 code, where the CPU has it (the same bits either way);
//! libm's scalar `erff` made the activation about 4 % of a bert-base attribution, and on a Zen 5
//! the AVX-512 build took it from 2.2 to 1.6 % (session 17, perf). Accuracy against f64: see
//! the tests (≤ 3e-7 absolute).

use ndarray::{ArrayD, ArrayViewD};
use rayon::prelude::*;

use super::Activation;

/// Elements per parallel work item.
const CHUNK: usize = 1 << 14;

/// `√(2/π)`.
const SQRT_2_OVER_PI: f32 = 0.797_884_6;
/// `1/√(2π)`.
const INV_SQRT_2PI: f32 = 0.398_942_3;

/// `eˣ` for finite `x` (clamped to `[-87, 88]`, where `f32` neither overflows nor goes
/// subnormal), to about 2 ulp: Cody–Waite reduction by `ln 2` and Cephes' degree-6 polynomial.
/// Branch-free, so a loop of it vectorises.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.0, 88.0);
    let n = (x * std::f32::consts::LOG2_E + 0.5).floor();
    let r = x - n * 0.693_359_4 + n * 2.121_944_4e-4;
    let p = 1.987_569_1e-4;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 0.166_666_65;
    let p = p * r + 0.5;
    let e = p * r * r + r + 1.0;
    e * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

/// `(Φ(v), φ(v))`: the standard normal CDF and density, with `erf` by Abramowitz & Stegun
/// 7.1.26 (absolute error ≤ 1.5e-7, the approximation PyTorch's vectorised CPU `erf` uses) and
/// one shared `exp(-v²/2)`.
#[inline(always)]
fn normal_cdf_pdf(v: f32) -> (f32, f32) {
    let u = (v * std::f32::consts::FRAC_1_SQRT_2).abs();
    let e = exp(-0.5 * v * v);
    let t = 1.0 / (1.0 + 0.327_591_1 * u);
    let r = 1.061_405_4;
    let r = r * t - 1.453_152;
    let r = r * t + 1.421_413_7;
    let r = r * t - 0.284_496_74;
    let r = r * t + 0.254_829_6;
    // Q(|v|) = erfc(|v|/√2)/2, without the cancellation of 1 + erf(v/√2) for v < 0.
    let tail = 0.5 * r * t * e;
    (if v < 0.0 { tail } else { 1.0 - tail }, INV_SQRT_2PI * e)
}

/// `act(v)` and `act'(v)`.
#[inline(always)]
fn value_and_slope(act: Activation, v: f32) -> (f32, f32) {
    match act {
        Activation::GeluErf => {
            let (cdf, pdf) = normal_cdf_pdf(v);
            (v * cdf, cdf + v * pdf)
        }
        Activation::GeluTanh => {
            // With y = √(2/π)(v + 0.044715 v³), E = e^{2y} and q = 1/(1+E): (1 + tanh y)/2 = E q
            // and 1 - tanh² y = 4 E q², without the cancellation of 1 - t² near t = ±1.
            // E is capped at e^80 (E q is 1 in f32 long before) and the slope's polynomial
            // evaluated at |v| ≤ 1e4 (its product with E q² is 0 in f32 beyond), so that nothing
            // overflows.
            let y = SQRT_2_OVER_PI * (v + 0.044715 * v * v * v);
            let e = exp((2.0 * y).min(80.0));
            let q = 1.0 / (1.0 + e);
            let half_1_plus_t = e * q;
            let vc = v.clamp(-1e4, 1e4);
            let slope =
                half_1_plus_t + 2.0 * vc * (half_1_plus_t * q) * SQRT_2_OVER_PI * (1.0 + 3.0 * 0.044715 * vc * vc);
            (v * half_1_plus_t, slope)
        }
        Activation::Relu => (v.max(0.0), if v > 0.0 { 1.0 } else { 0.0 }),
        Activation::Silu => {
            // σ(v) = 1/(1 + e^{-v}) (e^{-v} is capped, so σ is 0 far left, never NaN);
            // silu' = σ (1 + v (1 - σ)).
            let s = 1.0 / (1.0 + exp(-v));
            (v * s, s * (1.0 + v * (1.0 - s)))
        }
    }
}

/// Fills `y` (and `d`, unless empty) with `act` and `act'` of `x`; all the same length.
#[inline(always)]
fn fill(act: Activation, x: &[f32], y: &mut [f32], d: &mut [f32]) {
    if d.is_empty() {
        for (y, &v) in y.iter_mut().zip(x) {
            *y = value_and_slope(act, v).0;
        }
    } else {
        for ((y, d), &v) in y.iter_mut().zip(d.iter_mut()).zip(x) {
            (*y, *d) = value_and_slope(act, v);
        }
    }
}

/// [`fill`] compiled for AVX2 and FMA (8 lanes instead of the baseline's 4).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn fill_avx2(act: Activation, x: &[f32], y: &mut [f32], d: &mut [f32]) {
    fill(act, x, y, d)
}

/// [`fill`] compiled for AVX-512 (16 lanes; the same operations in the same order, so the
/// same bits as the narrower builds).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq,avx512vl,avx2,fma")]
fn fill_avx512(act: Activation, x: &[f32], y: &mut [f32], d: &mut [f32]) {
    fill(act, x, y, d)
}

/// [`fill`] with the widest instructions this CPU has.
fn fill_dispatch(act: Activation, x: &[f32], y: &mut [f32], d: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if super::avx512() {
        // SAFETY: the CPU has every feature `fill_avx512` is compiled for (checked just above).
        #[allow(unsafe_code)]
        unsafe {
            return fill_avx512(act, x, y, d);
        }
    }
    #[cfg(target_arch = "x86_64")]
    if super::avx2_fma() {
        // SAFETY: the CPU has both features `fill_avx2` is compiled for (checked just above).
        #[allow(unsafe_code)]
        unsafe {
            return fill_avx2(act, x, y, d);
        }
    }
    fill(act, x, y, d)
}

/// `act(x)` and, with `derivative`, `act'(x)`, as new row-major arrays of `x`'s shape
/// (`None` only if ndarray refuses the shape it was given).
///
/// # Shapes
/// - `x`, outputs: any `[..]`
pub(crate) fn activation(
    x: ArrayViewD<'_, f32>,
    act: Activation,
    derivative: bool,
) -> Option<(ArrayD<f32>, Option<ArrayD<f32>>)> {
    let shape = x.raw_dim();
    let owned;
    let input: &[f32] = match x.as_slice() {
        Some(s) => s,
        None => {
            owned = x.iter().copied().collect::<Vec<f32>>();
            &owned
        }
    };
    let mut y = vec![0.0f32; input.len()];
    let mut d = if derivative { vec![0.0f32; input.len()] } else { Vec::new() };
    if derivative {
        y.par_chunks_mut(CHUNK)
            .zip(d.par_chunks_mut(CHUNK))
            .zip(input.par_chunks(CHUNK))
            .for_each(|((y, d), x)| fill_dispatch(act, x, y, d));
    } else {
        y.par_chunks_mut(CHUNK).zip(input.par_chunks(CHUNK)).for_each(|(y, x)| fill_dispatch(act, x, y, &mut []));
    }
    let y = ArrayD::from_shape_vec(shape.clone(), y).ok()?;
    let d = if derivative { Some(ArrayD::from_shape_vec(shape, d).ok()?) } else { None };
    Some((y, d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slopes_match_finite_differences_and_values_match_the_definitions() {
        let h = 1e-3f64;
        for act in [Activation::GeluErf, Activation::GeluTanh, Activation::Relu, Activation::Silu] {
            for i in -40..=40 {
                let v = i as f32 * 0.1 + 0.013;
                let (y, d) = value_and_slope(act, v);
                let f = |v: f64| -> f64 {
                    match act {
                        Activation::GeluErf => 0.5 * v * (1.0 + libm::erf(v / std::f64::consts::SQRT_2)),
                        Activation::GeluTanh => {
                            0.5 * v * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (v + 0.044715 * v * v * v)).tanh())
                        }
                        Activation::Relu => v.max(0.0),
                        Activation::Silu => v / (1.0 + (-v).exp()),
                    }
                };
                let v64 = v as f64;
                let fd = (f(v64 + h) - f(v64 - h)) / (2.0 * h);
                assert!((y as f64 - f(v64)).abs() <= 1e-6 * (1.0 + f(v64).abs()), "{act:?}({v}) = {y} vs {}", f(v64));
                assert!((d as f64 - fd).abs() <= 1e-4, "{act:?}'({v}) = {d} vs {fd}");
            }
        }
    }

    /// The exact activations and slopes in f64.
    fn exact(act: Activation, v: f64) -> (f64, f64) {
        match act {
            Activation::GeluErf => {
                let cdf = 0.5 * (1.0 + libm::erf(v / std::f64::consts::SQRT_2));
                let pdf = (-0.5 * v * v).exp() / (2.0 * std::f64::consts::PI).sqrt();
                (v * cdf, cdf + v * pdf)
            }
            Activation::GeluTanh => {
                let c = (2.0 / std::f64::consts::PI).sqrt();
                let t = (c * (v + 0.044715 * v * v * v)).tanh();
                (0.5 * v * (1.0 + t), 0.5 * (1.0 + t) + 0.5 * v * (1.0 - t * t) * c * (1.0 + 3.0 * 0.044715 * v * v))
            }
            Activation::Relu => (v.max(0.0), if v > 0.0 { 1.0 } else { 0.0 }),
            Activation::Silu => {
                let s = 1.0 / (1.0 + (-v).exp());
                (v * s, s * (1.0 + v * (1.0 - s)))
            }
        }
    }

    #[test]
    fn vectorised_kernels_match_the_exact_functions_everywhere() {
        // Dense over the range that matters, then tails and extremes (no NaN, no overflow).
        let mut xs: Vec<f32> = (-20_000..=20_000).map(|i| i as f32 * 5e-4).collect();
        xs.extend([-1e30f32, -300.0, -88.0, -30.0, -1e-30, 0.0, 1e-30, 30.0, 88.0, 300.0, 1e30]);
        for act in [Activation::GeluErf, Activation::GeluTanh, Activation::Relu, Activation::Silu] {
            let mut y = vec![0.0f32; xs.len()];
            let mut d = vec![0.0f32; xs.len()];
            let mut y_base = vec![0.0f32; xs.len()];
            fill_dispatch(act, &xs, &mut y, &mut d);
            fill(act, &xs, &mut y_base, &mut []);
            let (mut worst_y, mut worst_d) = (0.0f64, 0.0f64);
            for (i, &v) in xs.iter().enumerate() {
                let (fy, fd) = exact(act, v as f64);
                // Absolute error for |f| ≤ 1, relative above (the f32 rounding of the result).
                let ey = (y[i] as f64 - fy).abs() / fy.abs().max(1.0);
                let ed = (d[i] as f64 - fd).abs() / fd.abs().max(1.0);
                assert!(ey <= 4e-7, "{act:?}({v}) = {} vs {fy}", y[i]);
                assert!(ed <= 1e-6, "{act:?}'({v}) = {} vs {fd}", d[i]);
                assert!(
                    (y_base[i] - y[i]).abs() <= 1e-6 * y[i].abs().max(1.0),
                    "baseline and wide builds differ at {v}"
                );
                worst_y = worst_y.max(ey);
                worst_d = worst_d.max(ed);
            }
            eprintln!("{act:?}: worst value error {worst_y:.1e}, slope error {worst_d:.1e}");
        }
    }

    #[test]
    fn every_build_of_the_fill_gives_the_same_bits() {
        let x: Vec<f32> =
            (0..1000).map(|i| (i as f32 - 500.0) * 0.031).chain([f32::MAX, -f32::MAX, 0.0, -0.0]).collect();
        for act in [Activation::GeluErf, Activation::GeluTanh, Activation::Relu, Activation::Silu] {
            let run = |f: &dyn Fn(&[f32], &mut [f32], &mut [f32])| {
                let (mut y, mut d) = (vec![0.0f32; x.len()], vec![0.0f32; x.len()]);
                f(&x, &mut y, &mut d);
                (y.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), d.iter().map(|v| v.to_bits()).collect::<Vec<_>>())
            };
            let baseline = run(&|x, y, d| fill(act, x, y, d));
            assert_eq!(run(&|x, y, d| fill_dispatch(act, x, y, d)), baseline, "{act:?}: the widest build");
            #[cfg(target_arch = "x86_64")]
            #[allow(unsafe_code)]
            if super::super::avx2_fma() {
                // SAFETY: both features are present (checked just above).
                assert_eq!(run(&|x, y, d| unsafe { fill_avx2(act, x, y, d) }), baseline, "{act:?}: AVX2");
            }
        }
        #[cfg(target_arch = "x86_64")]
        eprintln!("fused fill: AVX-512 build in use: {}", super::super::avx512());
    }

    #[test]
    fn exp_is_accurate_over_the_whole_float_range() {
        let mut worst = 0.0f64;
        for i in -86_990..=87_990 {
            let x = i as f32 * 1e-3;
            let want = (x as f64).exp();
            let rel = (exp(x) as f64 - want).abs() / want;
            worst = worst.max(rel);
        }
        assert!(worst <= 3e-7, "worst relative error {worst:e}");
        eprintln!("exp: worst relative error {worst:.1e}");
        assert_eq!(exp(-1e4), exp(-87.0));
        assert!(exp(1e4).is_finite());
    }

    #[test]
    fn strided_input_keeps_its_logical_order() {
        let x = ndarray::Array2::from_shape_fn((3, 4), |(i, j)| i as f32 - j as f32 * 0.5);
        let (y, d) = activation(x.t().into_dyn(), Activation::Relu, true).unwrap();
        let expected = x.t().mapv(|v| v.max(0.0));
        assert_eq!(y.into_dimensionality::<ndarray::Ix2>().unwrap(), expected);
        assert_eq!(d.unwrap().shape(), &[4, 3]);
    }
}
