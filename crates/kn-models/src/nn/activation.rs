//! FFN activation functions, by their Hugging Face names.

use burn::tensor::{activation, backend::Backend, Tensor, TensorPrimitive};

use super::DualMatmul;

/// The activation after the FFN input projection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Activation {
    /// Exact GELU, `x Φ(x)` (HF `gelu`; BERT).
    GeluErf,
    /// Tanh approximation of GELU (HF `gelu_new`, `gelu_fast`, `gelu_pytorch_tanh`; GPT-2, GPT-Neo).
    GeluTanh,
    /// `max(0, x)`.
    Relu,
    /// `x σ(x)` (HF `silu` / `swish`; the gate of Llama's SwiGLU FFN).
    Silu,
}

impl Activation {
    /// Parses a Hugging Face `hidden_act` / `activation_function` string.
    pub fn from_hf(name: &str) -> Option<Self> {
        match name {
            "gelu" => Some(Self::GeluErf),
            "gelu_new" | "gelu_fast" | "gelu_pytorch_tanh" => Some(Self::GeluTanh),
            "relu" => Some(Self::Relu),
            "silu" | "swish" => Some(Self::Silu),
            _ => None,
        }
    }

    /// Applies the activation element-wise.
    ///
    /// # Shapes
    /// - `x` and output: any `[..]`
    pub fn forward<B: DualMatmul, const D: usize>(self, x: Tensor<B, D>) -> Tensor<B, D> {
        if let Some(y) = B::fused_activation(x.clone().into_primitive().tensor(), self) {
            return Tensor::from_primitive(TensorPrimitive::Float(y));
        }
        match self {
            Self::GeluErf => gelu_erf(x),
            Self::GeluTanh => gelu_tanh(x),
            Self::Relu => activation::relu(x),
            Self::Silu => activation::silu(x),
        }
    }
}

/// `0.5 x (1 + erf(x / √2))` from differentiable primitives: burn 0.21's fused `gelu` has the
/// derivative of the tanh approximation, which biases every gradient through a BERT layer.
fn gelu_erf<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    (x.clone() * std::f64::consts::FRAC_1_SQRT_2).erf().add_scalar(1.0).mul(x).mul_scalar(0.5)
}

/// `0.5 x (1 + tanh(sqrt(2/π) (x + 0.044715 x³)))`, with `x³` as products (a float power of a
/// negative base is undefined on some GPU backends).
fn gelu_tanh<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    const SQRT_2_OVER_PI: f64 = 0.797_884_560_802_865_4;
    let cube = x.clone() * x.clone() * x.clone();
    let inner = (x.clone() + cube * 0.044715) * SQRT_2_OVER_PI;
    x * (inner.tanh() + 1.0) * 0.5
}
