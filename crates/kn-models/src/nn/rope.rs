//! Rotary position embeddings (RoPE), as Hugging Face's Llama family applies them: each head's
//! two halves form the pairs that rotate (`rotate_half`), angle `position · inv_freq[i]`.
//! <https://github.com/huggingface/transformers/blob/v4.57.6/src/transformers/models/llama/modeling_llama.py>
//!
//! burn-nn's `RotaryEncoding` pairs adjacent elements (Meta's layout) and precomputes a table of
//! every position up to the context length (128k × head_dim for Llama 3); here the angles of the
//! positions a call needs are computed on the host from the per-pair frequencies, in HF's
//! layout, so checkpoints saved by transformers load without permuting q/k.

use burn::tensor::{backend::Backend, Tensor, TensorData};

/// How the base frequencies are rescaled for long contexts (HF `rope_scaling`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RopeScaling {
    /// Every frequency divided by `factor` (HF `linear`).
    Linear {
        /// The divisor.
        factor: f64,
    },
    /// Llama 3.1's band-wise rescaling (HF `llama3`): long wavelengths divided by `factor`,
    /// short ones kept, a smooth blend between.
    Llama3 {
        /// Divisor of the long wavelengths.
        factor: f64,
        /// Wavelengths above `original / low_freq_factor` are divided by `factor`.
        low_freq_factor: f64,
        /// Wavelengths below `original / high_freq_factor` are kept.
        high_freq_factor: f64,
        /// The context length the model was pre-trained with.
        original_max_position_embeddings: f64,
    },
    /// Per-pair divisors stored with the weights (GGUF's `rope_freqs.weight`, which is how
    /// llama.cpp records Llama 3.1's scaling).
    Factors(Vec<f32>),
}

/// The rotation of one layer's queries and keys.
#[derive(Debug, Clone, PartialEq)]
pub struct Rotary {
    /// Angle per position of each of the `head_dim / 2` pairs.
    inv_freq: Vec<f64>,
}

impl Rotary {
    /// Frequencies `θ^(-2i/dim)` for `i < dim/2`, rescaled by `scaling`.
    pub fn new(theta: f64, dim: usize, scaling: Option<&RopeScaling>) -> Self {
        let mut inv_freq: Vec<f64> = (0..dim / 2).map(|i| 1.0 / theta.powf((2 * i) as f64 / dim as f64)).collect();
        match scaling {
            None => {}
            Some(RopeScaling::Linear { factor }) => inv_freq.iter_mut().for_each(|f| *f /= factor),
            Some(RopeScaling::Factors(div)) => inv_freq.iter_mut().zip(div).for_each(|(f, d)| *f /= f64::from(*d)),
            Some(&RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings,
            }) => {
                let low_wavelen = original_max_position_embeddings / low_freq_factor;
                let high_wavelen = original_max_position_embeddings / high_freq_factor;
                for f in &mut inv_freq {
                    let wavelen = 2.0 * std::f64::consts::PI / *f;
                    if wavelen > low_wavelen {
                        *f /= factor;
                    } else if wavelen >= high_wavelen {
                        let smooth = (original_max_position_embeddings / wavelen - low_freq_factor)
                            / (high_freq_factor - low_freq_factor);
                        *f = (1.0 - smooth) * *f / factor + smooth * *f;
                    }
                }
            }
        }
        Self { inv_freq }
    }

    /// Number of rotated elements per head.
    pub fn dim(&self) -> usize {
        2 * self.inv_freq.len()
    }

    /// `x` rotated to the absolute `positions` of its sequence axis:
    /// `x · cos + rotate_half(x) · sin`, `rotate_half([a, b]) = [-b, a]`.
    ///
    /// # Shapes
    /// - `x`: `[batch, heads, positions.len(), head_dim]`; output: same
    pub fn apply<B: Backend>(&self, x: Tensor<B, 4>, positions: &[usize]) -> Tensor<B, 4> {
        let [b, h, s, d] = x.dims();
        let half = self.inv_freq.len();
        let (mut cos, mut sin) = (Vec::with_capacity(s * d), Vec::with_capacity(s * d));
        for &p in positions {
            for _ in 0..2 {
                for f in &self.inv_freq {
                    // In f32 as transformers computes the angle, then cos/sin of that f32.
                    let angle = f64::from(p as f32 * *f as f32);
                    cos.push(angle.cos() as f32);
                    sin.push(angle.sin() as f32);
                }
            }
        }
        let device = x.device();
        let table = |v: Vec<f32>| Tensor::<B, 2>::from_data(TensorData::new(v, [s, d]), &device).reshape([1, 1, s, d]);
        let (cos, sin) = (table(cos), table(sin));
        let x1 = x.clone().slice([0..b, 0..h, 0..s, 0..half]);
        let x2 = x.clone().slice([0..b, 0..h, 0..s, half..d]);
        let rotated = Tensor::cat(vec![x2.neg(), x1], 3);
        x * cos + rotated * sin
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type B = crate::backend::Inner;

    #[test]
    fn rotation_pairs_the_two_halves_and_keeps_norms() {
        let rope = Rotary::new(10_000.0, 4, None);
        let dev = Default::default();
        let x = Tensor::<B, 4>::from_data(TensorData::new(vec![1.0f32, 2.0, 3.0, 4.0], [1, 1, 1, 4]), &dev);
        let y = rope.apply(x, &[3]).into_data().to_vec::<f32>().unwrap();
        // Pair 0 = (x0, x2) at angle 3, pair 1 = (x1, x3) at angle 3 / 100.
        let (c0, s0) = (3.0f64.cos(), 3.0f64.sin());
        let (c1, s1) = (0.03f64.cos(), 0.03f64.sin());
        let want = [1.0 * c0 - 3.0 * s0, 2.0 * c1 - 4.0 * s1, 3.0 * c0 + 1.0 * s0, 4.0 * c1 + 2.0 * s1];
        for (g, w) in y.iter().zip(want) {
            assert!((f64::from(*g) - w).abs() < 1e-5, "{y:?} vs {want:?}");
        }
    }

    #[test]
    fn llama3_scaling_divides_long_wavelengths_and_keeps_short_ones() {
        let scaling = RopeScaling::Llama3 {
            factor: 8.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: 8192.0,
        };
        let plain = Rotary::new(500_000.0, 128, None);
        let scaled = Rotary::new(500_000.0, 128, Some(&scaling));
        assert_eq!(plain.inv_freq[0], scaled.inv_freq[0], "the fastest pair is kept");
        let last = plain.inv_freq.len() - 1;
        assert!((scaled.inv_freq[last] - plain.inv_freq[last] / 8.0).abs() < 1e-18, "the slowest is divided");
    }
}
