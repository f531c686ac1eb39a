//! Normalisation layers: LayerNorm (BERT, GPT) and RMSNorm (Llama, Mistral, Qwen2), one type
//! with the kind as data.

use burn::tensor::{Tensor, TensorPrimitive};

use super::DualMatmul;

/// How a [`Norm`] normalises a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NormKind {
    /// `(x - mean) / sqrt(var + eps) · γ + β`, with the biased variance (PyTorch `nn.LayerNorm`).
    Layer,
    /// `x / sqrt(mean(x²) + eps) · γ`, no centring and no shift (HF `LlamaRMSNorm`).
    Rms,
}

/// A normalisation over the last axis.
#[derive(Debug, Clone)]
pub struct Norm<B: DualMatmul> {
    /// LayerNorm or RMSNorm.
    pub kind: NormKind,
    /// Scale, `[d]`.
    pub gamma: Tensor<B, 1>,
    /// Shift, `[d]` (LayerNorm; RMSNorm has none).
    pub beta: Option<Tensor<B, 1>>,
    /// Added to the variance (or the mean square).
    pub eps: f64,
}

impl<B: DualMatmul> Norm<B> {
    /// Normalises every row: one fused kernel where the backend has it
    /// ([`DualMatmul::fused_norm`]), else composed from burn's primitives.
    ///
    /// # Shapes
    /// - `x` and output: `[batch, seq, d]`
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let gamma = self.gamma.clone().into_primitive().tensor();
        let beta = self.beta.as_ref().map(|b| b.clone().into_primitive().tensor());
        match B::fused_norm(x.clone().into_primitive().tensor(), &gamma, beta.as_ref(), self.kind, self.eps) {
            Some(y) => Tensor::from_primitive(TensorPrimitive::Float(y)),
            None => self.composed(x),
        }
    }

    /// The norm composed from burn's primitives (the reference the fused kernel is tested
    /// against).
    ///
    /// # Shapes
    /// - `x` and output: `[batch, seq, d]`
    pub fn composed(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let x = match self.kind {
            NormKind::Layer => {
                let (var, mean) = x.clone().var_mean_bias(2);
                (x - mean) / (var + self.eps).sqrt()
            }
            NormKind::Rms => {
                let ms = x.clone().square().mean_dim(2);
                x / (ms + self.eps).sqrt()
            }
        };
        let x = x * self.gamma.clone().unsqueeze::<3>();
        match &self.beta {
            Some(beta) => x + beta.clone().unsqueeze::<3>(),
            None => x,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;

    type B = crate::backend::Inner;

    #[test]
    fn rms_norm_divides_by_the_root_mean_square() {
        let dev = Default::default();
        let x = Tensor::<B, 3>::from_data(TensorData::new(vec![3.0f32, -4.0], [1, 1, 2]), &dev);
        let norm = Norm {
            kind: NormKind::Rms,
            gamma: Tensor::from_data(TensorData::new(vec![1.0f32, 2.0], [2]), &dev),
            beta: None,
            eps: 0.0,
        };
        let y = norm.forward(x).into_data().to_vec::<f32>().unwrap();
        // rms = sqrt((9 + 16) / 2) = 3.5355
        let rms = 12.5f32.sqrt();
        assert!((y[0] - 3.0 / rms).abs() < 1e-6 && (y[1] + 8.0 / rms).abs() < 1e-6, "{y:?}");
    }
}

#[cfg(test)]
mod autodiff_tests {
    use super::*;
    use burn::tensor::TensorData;

    type AB = crate::backend::AutodiffBackend;

    fn tensor<const D: usize>(shape: [usize; D], seed: f32) -> Tensor<AB, D> {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37 + seed).sin() * 2.0 + 0.3).collect();
        Tensor::from_data(TensorData::new(v, shape), &Default::default())
    }

    #[test]
    fn forward_and_input_gradient_equal_the_composed_norm_on_every_backend() {
        // On ndarray `forward` is the fused kernel; elsewhere both paths compose (trivially equal).
        for kind in [NormKind::Layer, NormKind::Rms] {
            let norm = Norm {
                kind,
                gamma: tensor([24], 1.0),
                beta: (kind == NormKind::Layer).then(|| tensor([24], 2.0)),
                eps: 1e-5,
            };
            let g = tensor([2, 3, 24], 3.0);
            let run = |fused: bool| {
                let x = tensor([2, 3, 24], 0.5).require_grad();
                let y = if fused { norm.forward(x.clone()) } else { norm.composed(x.clone()) };
                let grads = (y.clone() * g.clone()).sum().backward();
                let dx = x.grad(&grads).unwrap().into_data().to_vec::<f32>().unwrap();
                (y.into_data().to_vec::<f32>().unwrap(), dx)
            };
            let ((y, dx), (y2, dx2)) = (run(true), run(false));
            let err = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
            eprintln!("{kind:?}: fused vs composed: values {:.1e}, gradients {:.1e}", err(&y, &y2), err(&dx, &dx2));
            assert!(err(&y, &y2) <= 2e-6 && err(&dx, &dx2) <= 2e-5, "{kind:?}");
        }
    }
}
