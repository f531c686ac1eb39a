//! The building blocks shared by every architecture: one implementation each, with the
//! differences between BERT, GPT-2, GPT-Neo and the Llama family expressed as data.

pub mod activation;
pub mod attention;
#[cfg(feature = "ndarray")]
mod attention_fused;
pub mod block;
pub mod dual;
pub mod embedding;
#[cfg(feature = "ndarray")]
mod fused;
#[cfg(feature = "ndarray")]
mod gemm;
pub mod head;
pub mod linear;
pub mod mask;
pub mod norm;
#[cfg(feature = "ndarray")]
mod norm_fused;
pub mod rope;
#[cfg(feature = "ndarray")]
mod softmax;

#[cfg(feature = "ndarray")]
pub use gemm::product_gflops;

pub use activation::Activation;
pub use attention::Attention;
pub use block::{Block, NormPlacement};
pub use dual::{DualMatmul, NormOutput};
pub use embedding::Embeddings;
pub use head::LmHead;
pub use linear::Linear;
pub use mask::AttentionKind;
pub use norm::{Norm, NormKind};
pub use rope::{RopeScaling, Rotary};
