//! Affine map `y = x W + b`, its weight stored once, in the layout its two products read best.

use std::sync::OnceLock;

use burn::tensor::{Tensor, TensorPrimitive};

use super::{DualMatmul, Packed, PackedWeight};
use crate::weights::RawTensor;

/// `y = x W + b` with `W: [d_in, d_out]`.
///
/// Attribution multiplies by `W` forwards and by `Wᵀ` backwards. On backends that want a
/// contiguous operand for the backward product ([`DualMatmul::KEEP_TRANSPOSE`], the ndarray
/// build) the weight is stored once:
/// - where the backend reads a transposed view at full speed
///   ([`DualMatmul::views_at_full_speed`]: the ndarray build on AVX2 + FMA or AVX-512F, whose
///   `nn/packed.rs` packs a view by register transposes), in the layout the checkpoint stores
///   it (PyTorch's `[d_out, d_in]` for `nn.Linear`, `[d_in, d_out]` for GPT-2's `Conv1D`): no
///   transpose at load, no second copy; one of the two products reads a view;
/// - elsewhere, in the layout that makes both products fast with the `gemm` crate alone, which
///   reads a transposed view at full speed when the inner dimension is the narrow side
///   (`d_model`), and at a fraction of it when it is the wide side (`d_ff`, the vocabulary):
///   an expanding map (`d_in < d_out`: FFN in, gate, the head) keeps `Wᵀ`, a contracting one
///   `W`, and only square maps (attention projections) build a contiguous `Wᵀ` beside `W`, on
///   the first product whose input gradient is needed, so that forward-only commands never pay
///   for it.
///
/// Other backends keep `[d_in, d_out]` and multiply transposed operands in place.
#[derive(Debug, Clone)]
pub struct Linear<B: DualMatmul> {
    /// The weight as kept: `[d_in, d_out]`, or `[d_out, d_in]` when `transposed`.
    stored: Tensor<B, 2>,
    /// Whether `stored` is `Wᵀ`.
    transposed: bool,
    /// A contiguous `Wᵀ` beside a square `W` once a backward pass needed it.
    weight_t: OnceLock<Tensor<B, 2>>,
    /// `W` and `Wᵀ` packed once for attribution's products ([`Linear::prepare_packed`]), where
    /// the backend packs them.
    packed: OnceLock<(Option<PackedWeight>, Option<PackedWeight>)>,
    /// Bias, `[d_out]`.
    pub bias: Option<Tensor<B, 1>>,
}

impl<B: DualMatmul> Linear<B> {
    /// From a host weight `[d_in, d_out]` (transposed on the host when it is kept as `Wᵀ`).
    pub fn from_raw(w: RawTensor, bias: Option<Tensor<B, 1>>, device: &B::Device) -> Self {
        let (d_in, d_out) = (w.shape[0], w.shape[1]);
        if Self::stores_transposed(d_in, d_out, false) {
            Self::from_transposed(w.transposed().into_tensor(device), bias)
        } else {
            Self::new(w.into_tensor(device), bias)
        }
    }

    /// From a host `Wᵀ` `[d_out, d_in]` (PyTorch's `nn.Linear` layout), transposed on the host
    /// only when it is not kept as it is.
    pub fn from_raw_transposed(wt: RawTensor, bias: Option<Tensor<B, 1>>, device: &B::Device) -> Self {
        let (d_out, d_in) = (wt.shape[0], wt.shape[1]);
        if Self::stores_transposed(d_in, d_out, true) {
            Self::from_transposed(wt.into_tensor(device), bias)
        } else {
            Self::new(wt.transposed().into_tensor(device), bias)
        }
    }

    /// Whether a `[d_in, d_out]` map given as `Wᵀ` (PyTorch's layout) is kept so on this
    /// backend: every map where views run at full speed, else an expanding one on a backend
    /// that keeps transposes.
    pub fn keeps_transposed(d_in: usize, d_out: usize) -> bool {
        Self::stores_transposed(d_in, d_out, true)
    }

    /// Whether a `[d_in, d_out]` map given as `Wᵀ` (`given_transposed`) or as `W` is stored as
    /// `Wᵀ` on this backend (see [`Linear`]).
    fn stores_transposed(d_in: usize, d_out: usize, given_transposed: bool) -> bool {
        B::KEEP_TRANSPOSE && if B::views_at_full_speed() { given_transposed } else { d_in < d_out }
    }

    /// From a weight `[d_in, d_out]` already on the device, kept as it is.
    pub fn new(weight: Tensor<B, 2>, bias: Option<Tensor<B, 1>>) -> Self {
        Self { stored: weight, transposed: false, weight_t: OnceLock::new(), packed: OnceLock::new(), bias }
    }

    /// From `Wᵀ` `[d_out, d_in]` already on the device, kept as it is (a tied head keeps the
    /// token-embedding table itself). On backends that do not keep transposes the map holds
    /// the transposed view.
    pub fn from_transposed(wt: Tensor<B, 2>, bias: Option<Tensor<B, 1>>) -> Self {
        if B::KEEP_TRANSPOSE {
            Self { stored: wt, transposed: true, weight_t: OnceLock::new(), packed: OnceLock::new(), bias }
        } else {
            Self::new(wt.transpose(), bias)
        }
    }

    /// Whether a contiguous `Wᵀ` is at hand for the backward product without building one
    /// (a kept `Wᵀ`, or a square map's built one).
    pub fn has_transpose(&self) -> bool {
        self.transposed || self.weight_t.get().is_some()
    }

    /// Builds what the backward product reads, now (a square map's contiguous `Wᵀ`), on
    /// backends that keep it.
    pub fn prepare_transpose(&self) {
        if B::KEEP_TRANSPOSE {
            self.backward_operand();
        }
    }

    /// Packs `W` and `Wᵀ` once for the products of attribution's passes (forward products
    /// whose input gradient is needed, and those gradients' products), now, where the backend
    /// packs weights ([`DualMatmul::prepack`]: the ndarray build on AVX-512F or AVX2 + FMA);
    /// two copies of the weight's size, kept until [`Linear::set_weight`].
    ///
    /// For maps multiplied by few rows many times, whose packing on every product costs about
    /// as much as the product: the language-model head in attribution (20-60 target rows per
    /// pass against the whole vocabulary).
    pub fn prepare_packed(&self) {
        self.packed.get_or_init(|| {
            let forward = B::prepack(&self.weight().into_primitive().tensor());
            let backward = B::prepack(&self.backward_operand().into_primitive().tensor());
            (forward, backward)
        });
    }

    /// Whether attribution's products read packed copies of `W` and `Wᵀ`
    /// ([`Linear::prepare_packed`]).
    pub fn is_packed(&self) -> bool {
        self.packed.get().is_some_and(|(f, b)| f.is_some() && b.is_some())
    }

    /// Whether the backward product needs a contiguous `Wᵀ` built beside `W`: where views do
    /// not run at full speed, a map kept as `[d_in, d_out]` that does not contract (the square
    /// ones, or an expanding one given to [`Linear::new`]); a contracting one reads the
    /// transposed view at full speed.
    fn builds_transpose(&self) -> bool {
        let [d_in, d_out] = self.stored.dims();
        !self.transposed && d_out >= d_in && !B::views_at_full_speed()
    }

    /// `Wᵀ` `[d_out, d_in]` as the backward product reads it: the kept `Wᵀ`, the built
    /// contiguous one (built now if need be), or a transposed view of a contracting `W`.
    fn backward_operand(&self) -> Tensor<B, 2> {
        if self.transposed {
            self.stored.clone()
        } else if self.builds_transpose() {
            self.weight_t.get_or_init(|| contiguous_transpose(&self.stored)).clone()
        } else {
            self.stored.clone().transpose()
        }
    }

    /// The weight, `[d_in, d_out]` (a transposed view when kept as `Wᵀ`).
    pub fn weight(&self) -> Tensor<B, 2> {
        if self.transposed {
            self.stored.clone().transpose()
        } else {
            self.stored.clone()
        }
    }

    /// Replaces the weight (`[d_in, d_out]`, same shape), in the layout kept, and drops a built
    /// `Wᵀ` and a packed copy.
    pub fn set_weight(&mut self, weight: Tensor<B, 2>) {
        self.weight_t = OnceLock::new();
        self.packed = OnceLock::new();
        self.stored = if self.transposed { contiguous_transpose(&weight) } else { weight };
    }

    /// Applies the map to every row.
    ///
    /// # Shapes
    /// - `x`: `[batch, seq, d_in]`; output: `[batch, seq, d_out]`
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let x = x.into_primitive().tensor();
        let w = self.weight().into_primitive().tensor();
        let bias = self.bias.as_ref().map(|b| b.clone().into_primitive().tensor());
        let y = if B::KEEP_TRANSPOSE {
            let packed = match self.packed.get() {
                Some((forward, backward)) => Packed { forward: forward.as_ref(), backward: backward.as_ref() },
                None => Packed::default(),
            };
            B::dual_matmul(x, w, bias, || self.backward_operand().into_primitive().tensor(), packed)
        } else {
            B::rows_matmul_bias(x, w, bias)
        };
        Tensor::<B, 3>::from_primitive(TensorPrimitive::Float(y))
    }
}

/// `wᵀ` materialised (row-major), not a strided view.
fn contiguous_transpose<B: DualMatmul>(w: &Tensor<B, 2>) -> Tensor<B, 2> {
    if let Some(t) = B::transpose_2d(&w.clone().into_primitive().tensor()) {
        return Tensor::from_primitive(TensorPrimitive::Float(t));
    }
    let shape = w.dims().to_vec();
    let data = w.clone().into_data().iter::<f32>().collect();
    RawTensor { shape, data }.transpose().into_tensor(&w.device())
}
