//! Fused element-wise kernels for the ndarray build: an activation and its derivative in one
//! multi-threaded pass over the array, instead of the five to ten single-threaded passes (each
//! allocating) that composing it from burn's primitives and differentiating them costs.

use ndarray::{ArrayD, ArrayViewD};
use rayon::prelude::*;

use super::Activation;

/// Elements per parallel work item.
const CHUNK: usize = 1 << 14;

/// `√(2/π)`.
const SQRT_2_OVER_PI: f32 = 0.797_884_6;
/// `1/√(2π)`.
const INV_SQRT_2PI: f32 = 0.398_942_3;

/// `act(v)` and `act'(v)`.
fn value_and_slope(act: Activation, v: f32) -> (f32, f32) {
    match act {
        Activation::GeluErf => {
            let cdf = 0.5 * (1.0 + libm::erff(v * std::f32::consts::FRAC_1_SQRT_2));
            (v * cdf, cdf + v * INV_SQRT_2PI * (-0.5 * v * v).exp())
        }
        Activation::GeluTanh => {
            let t = (SQRT_2_OVER_PI * (v + 0.044715 * v * v * v)).tanh();
            let slope = 0.5 * (1.0 + t) + 0.5 * v * (1.0 - t * t) * SQRT_2_OVER_PI * (1.0 + 3.0 * 0.044715 * v * v);
            (0.5 * v * (1.0 + t), slope)
        }
        Activation::Relu => {
            if v > 0.0 {
                (v, 1.0)
            } else {
                (0.0, 0.0)
            }
        }
    }
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
        y.par_chunks_mut(CHUNK).zip(d.par_chunks_mut(CHUNK)).zip(input.par_chunks(CHUNK)).for_each(|((y, d), x)| {
            for ((y, d), &v) in y.iter_mut().zip(d.iter_mut()).zip(x) {
                (*y, *d) = value_and_slope(act, v);
            }
        });
    } else {
        y.par_chunks_mut(CHUNK).zip(input.par_chunks(CHUNK)).for_each(|(y, x)| {
            for (y, &v) in y.iter_mut().zip(x) {
                *y = value_and_slope(act, v).0;
            }
        });
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
        for act in [Activation::GeluErf, Activation::GeluTanh, Activation::Relu] {
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
                    }
                };
                let v64 = v as f64;
                let fd = (f(v64 + h) - f(v64 - h)) / (2.0 * h);
                assert!((y as f64 - f(v64)).abs() <= 1e-6 * (1.0 + f(v64).abs()), "{act:?}({v}) = {y} vs {}", f(v64));
                assert!((d as f64 - fd).abs() <= 1e-4, "{act:?}'({v}) = {d} vs {fd}");
            }
        }
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
