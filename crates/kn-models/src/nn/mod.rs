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
#[cfg(feature = "ndarray")]
mod packed;
pub mod rope;
#[cfg(feature = "ndarray")]
mod softmax;
#[cfg(feature = "ndarray")]
mod tile_fma;

#[cfg(feature = "ndarray")]
pub use gemm::{prepacked_product_gflops, product_gflops};

/// Whether the CPU has AVX2 and FMA, what the fused kernels' AVX2 builds are compiled for
/// (detected by `std`, which caches it; false elsewhere than on x86-64).
#[cfg(feature = "ndarray")]
fn avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether the CPU has what the fused kernels' widest builds are compiled for (AVX-512 F, DQ
/// and VL, with AVX2 and FMA), detected by `std` (which caches it).
#[cfg(all(feature = "ndarray", target_arch = "x86_64"))]
fn avx512() -> bool {
    use std::arch::is_x86_feature_detected as has;
    has!("avx512f") && has!("avx512dq") && has!("avx512vl") && avx2_fma()
}

pub use activation::Activation;
pub use attention::Attention;
pub use block::{Block, NormPlacement};
pub use dual::{DualMatmul, NormOutput, Packed, PackedWeight};
pub use embedding::Embeddings;
pub use head::LmHead;
pub use linear::Linear;
pub use mask::AttentionKind;
pub use norm::{Norm, NormKind};
pub use rope::{RopeScaling, Rotary};
