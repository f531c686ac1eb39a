//! `x · W` for constant weights, with `Wᵀ` stored beside `W` where the backend profits.
//!
//! Reverse-mode autodiff computes the input gradient of `y = x · W` as `g · Wᵀ`. burn's
//! autodiff passes a transposed *view* of `W`, and burn-ndarray copies every non-contiguous
//! matmul operand before multiplying: for IG on CPU those strided copies of the weight
//! matrices cost as much as the products themselves (and more on the one-row causal path).
//! [`DualMatmul::dual_matmul`] differentiates `x` only (weights are constants in attribution)
//! and multiplies the gradient by the stored, contiguous `Wᵀ`. Backends whose matmul reads
//! transposed operands in place (libtorch, wgpu) store no transpose.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::Autodiff;
use burn::tensor::backend::Backend;
use burn::tensor::ops::FloatTensor;
use burn::tensor::Shape;
use burn::tensor::TensorMetadata;

use super::{Activation, NormKind};

/// A fused norm's output and, when kept for the backward pass, `(x̂, 1/σ per row)`.
pub type NormOutput<B> = (FloatTensor<B>, Option<(FloatTensor<B>, FloatTensor<B>)>);

/// A constant weight packed once, in host memory, for a backend's products
/// ([`DualMatmul::prepack`]); opaque, cheap to clone (shared).
#[derive(Clone)]
pub struct PackedWeight(
    // Read (downcast) by the backend that made it: none in builds without ndarray.
    #[cfg_attr(not(feature = "ndarray"), allow(dead_code))] std::sync::Arc<dyn std::any::Any + Send + Sync>,
);

impl std::fmt::Debug for PackedWeight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PackedWeight")
    }
}

/// The packed copies of a constant weight a product may read ([`DualMatmul::dual_matmul`]): `W`
/// for the forward product, `Wᵀ` for the input gradient's.
#[derive(Debug, Clone, Copy, Default)]
pub struct Packed<'a> {
    /// `W` `[k, n]` packed, for `x · W`.
    pub forward: Option<&'a PackedWeight>,
    /// `Wᵀ` `[n, k]` packed, for `grad_y · Wᵀ`.
    pub backward: Option<&'a PackedWeight>,
}

/// A backend that can multiply by a constant weight given both `W` and `Wᵀ`.
pub trait DualMatmul: Backend {
    /// Whether models on this backend should keep `Wᵀ` (costs the weights' memory once more).
    const KEEP_TRANSPOSE: bool;

    /// Whether this backend multiplies by a weight read through a transposed view as fast as by
    /// a contiguous one, forwards and backwards, so that a [`super::Linear`] keeps its weight in
    /// the layout the checkpoint stores (no transpose at load) and never builds a `Wᵀ` beside it.
    /// The ndarray build where `nn/packed.rs` runs (AVX2 + FMA or AVX-512F); elsewhere false.
    fn views_at_full_speed() -> bool {
        false
    }

    /// Whether attribution should run independent passes concurrently
    /// ([`kn_core::KnowledgeModel::concurrent_passes`]): for backends that compute on the
    /// calling thread, so that one pass's element-wise work overlaps another's products.
    const CONCURRENT_PASSES: bool = false;

    /// `x · w` over the last axis of `x`, for a 2-D `w`: the leading axes of `x` are rows.
    ///
    /// The default reshapes to 2-D and uses the backend's product; burn-ndarray's reshape and
    /// matmul copy every operand, so the ndarray backend multiplies the arrays in place.
    ///
    /// # Shapes
    /// - `x`: `[.., k]` (rank ≥ 2), `w`: `[k, n]`; output: `[.., n]`
    fn rows_matmul(x: FloatTensor<Self>, w: FloatTensor<Self>) -> FloatTensor<Self> {
        reshaped_matmul::<Self>(x, w)
    }

    /// `x · w + bias` (the bias added to every row); the default is [`DualMatmul::rows_matmul`]
    /// and the backend's broadcast add. The ndarray backend writes the bias into the product's
    /// output before accumulating onto it (no add pass, no second output).
    ///
    /// # Shapes
    /// - `x`: `[.., k]` (rank ≥ 2), `w`: `[k, n]`, `bias`: `[n]`; output: `[.., n]`
    fn rows_matmul_bias(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        bias: Option<FloatTensor<Self>>,
    ) -> FloatTensor<Self> {
        add_bias::<Self>(Self::rows_matmul(x, w), bias)
    }

    /// `act(x)` and, with `derivative`, `act'(x)`, from one fused kernel; `None` where the
    /// backend has none (the default).
    ///
    /// # Shapes
    /// - `x`, outputs: any `[..]`
    fn activation_kernel(
        _x: &FloatTensor<Self>,
        _act: Activation,
        _derivative: bool,
    ) -> Option<(FloatTensor<Self>, Option<FloatTensor<Self>>)> {
        None
    }

    /// `act(x)` through [`DualMatmul::activation_kernel`], differentiable on autodiff backends
    /// (the backward multiplies by the stored `act'(x)`); `None` where there is no kernel and
    /// the caller composes the activation from primitives.
    ///
    /// # Shapes
    /// - `x`, output: any `[..]`
    fn fused_activation(x: FloatTensor<Self>, act: Activation) -> Option<FloatTensor<Self>> {
        Self::activation_kernel(&x, act, false).map(|(y, _)| y)
    }

    /// `log softmax(x)` over the last axis from one fused kernel (the normaliser summed in
    /// blocks, as `kn_core::predict::log_softmax`); `None` where the backend has none.
    ///
    /// # Shapes
    /// - `x`, output: `[.., vocab]`
    fn log_softmax_kernel(_x: &FloatTensor<Self>) -> Option<FloatTensor<Self>> {
        None
    }

    /// The input gradient of `y = log softmax(x)` given the output gradient `g`:
    /// `g − exp(y) · Σ g` over the last axis; `None` where the backend has no kernel.
    ///
    /// # Shapes
    /// - `y`, `g`, output: `[.., vocab]`
    fn log_softmax_backward_kernel(_y: &FloatTensor<Self>, _g: &FloatTensor<Self>) -> Option<FloatTensor<Self>> {
        None
    }

    /// `log softmax(x)` through [`DualMatmul::log_softmax_kernel`], differentiable on autodiff
    /// backends; `None` where there is no kernel and the caller composes it.
    ///
    /// # Shapes
    /// - `x`, output: `[.., vocab]`
    fn fused_log_softmax(x: FloatTensor<Self>) -> Option<FloatTensor<Self>> {
        Self::log_softmax_kernel(&x)
    }

    /// A LayerNorm or RMSNorm over the last axis (`x̂ · γ + β`, `β` for LayerNorm only) from one
    /// fused kernel, and with `keep` what its backward needs (`x̂`, and `1/σ` per row); `None`
    /// where the backend has none (the default: the caller composes it).
    ///
    /// # Shapes
    /// - `x`, output, `x̂`: `[.., d]`; `gamma`, `beta`: `[d]`; `1/σ`: `[rows]`
    fn norm_kernel(
        _x: &FloatTensor<Self>,
        _gamma: &FloatTensor<Self>,
        _beta: Option<&FloatTensor<Self>>,
        _kind: NormKind,
        _eps: f64,
        _keep: bool,
    ) -> Option<NormOutput<Self>> {
        None
    }

    /// The input gradient of a norm ([`DualMatmul::norm_kernel`]) given the output gradient
    /// `g`, from its kept `x̂` and `1/σ`; `None` where the backend has no kernel.
    ///
    /// # Shapes
    /// - `g`, `xhat`, output: `[.., d]`; `rstd`: `[rows]`; `gamma`: `[d]`
    fn norm_backward_kernel(
        _g: &FloatTensor<Self>,
        _xhat: &FloatTensor<Self>,
        _rstd: &FloatTensor<Self>,
        _gamma: &FloatTensor<Self>,
        _kind: NormKind,
    ) -> Option<FloatTensor<Self>> {
        None
    }

    /// A norm through [`DualMatmul::norm_kernel`], differentiable in `x` on autodiff backends
    /// (`γ` and `β` are constants; `None` if either is differentiated); `None` where there is
    /// no kernel and the caller composes it.
    ///
    /// # Shapes
    /// - `x`, output: `[.., d]`; `gamma`, `beta`: `[d]`
    fn fused_norm(
        x: FloatTensor<Self>,
        gamma: &FloatTensor<Self>,
        beta: Option<&FloatTensor<Self>>,
        kind: NormKind,
        eps: f64,
    ) -> Option<FloatTensor<Self>> {
        Self::norm_kernel(&x, gamma, beta, kind, eps, false).map(|(y, _)| y)
    }

    /// The attention core `softmax(scale · q·kᵀ + bias) · v` from one fused kernel, and with
    /// `keep` the probabilities its backward needs; `None` where the backend has none (the
    /// default: the caller composes it) or the shapes are not the kernel's.
    ///
    /// # Shapes
    /// - `q`: `[b, h, r, dh]`, `k`, `v`: `[b or 1, h, t, dh]`, `bias`: `[b or 1, 1, n, t]` (`n`
    ///   divides `r`; query row `i` reads bias row `i mod n`); output: `[b, h, r, dh]`,
    ///   probabilities `[b, h, r, t]`
    fn attention_kernel(
        _q: &FloatTensor<Self>,
        _k: &FloatTensor<Self>,
        _v: &FloatTensor<Self>,
        _bias: Option<&FloatTensor<Self>>,
        _scale: f64,
        _keep: bool,
    ) -> Option<(FloatTensor<Self>, Option<FloatTensor<Self>>)> {
        None
    }

    /// The gradients of [`DualMatmul::attention_kernel`]'s output with respect to `q`, `k`, `v`
    /// given its output gradient `g` and kept probabilities; `None` where the backend has no
    /// kernel.
    ///
    /// # Shapes
    /// - `g`, `q`, `dq`: `[b, h, r, dh]`; `k`, `v`, `dk`, `dv`: `[b or 1, h, t, dh]`; `probs`: `[b, h, r, t]`
    fn attention_backward_kernel(
        _g: &FloatTensor<Self>,
        _q: &FloatTensor<Self>,
        _k: &FloatTensor<Self>,
        _v: &FloatTensor<Self>,
        _probs: &FloatTensor<Self>,
        _scale: f64,
    ) -> Option<[FloatTensor<Self>; 3]> {
        None
    }

    /// The attention core through [`DualMatmul::attention_kernel`], differentiable in `q`, `k`
    /// and `v` on autodiff backends (the bias is a constant; `None` if it is differentiated);
    /// `None` where there is no kernel and the caller composes it.
    ///
    /// # Shapes
    /// - as [`DualMatmul::attention_kernel`]
    fn fused_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        bias: Option<&FloatTensor<Self>>,
        scale: f64,
    ) -> Option<FloatTensor<Self>> {
        Self::attention_kernel(&q, &k, &v, bias, scale, false).map(|(ctx, _)| ctx)
    }

    /// `log softmax(x)` at one column per row (`ids[row]`, rows in row-major order) from one
    /// fused kernel, and its rows' normalisers for the backward pass; `None` where the backend
    /// has none or an id is out of range.
    ///
    /// # Shapes
    /// - `x`: `[.., vocab]`; values: `x`'s shape without its last axis; normalisers: `[rows]`
    fn picked_log_softmax_kernel(
        _x: &FloatTensor<Self>,
        _ids: &[u32],
    ) -> Option<(FloatTensor<Self>, FloatTensor<Self>)> {
        None
    }

    /// The input gradient of [`DualMatmul::picked_log_softmax_kernel`] given the gradient `g`
    /// of its values; `None` where the backend has no kernel.
    ///
    /// # Shapes
    /// - `x`, output: `[.., vocab]`; `shift`: `[rows]`; `g`: `x`'s shape without its last axis
    fn picked_log_softmax_backward_kernel(
        _x: &FloatTensor<Self>,
        _shift: &FloatTensor<Self>,
        _ids: &[u32],
        _g: &FloatTensor<Self>,
    ) -> Option<FloatTensor<Self>> {
        None
    }

    /// [`DualMatmul::picked_log_softmax_backward_kernel`] written over `x`, taken by value
    /// (the backward pass owns it and no longer needs it); `Err(x)` where the backend cannot
    /// (another reference to `x`'s memory, another layout), and the caller allocates.
    ///
    /// # Shapes
    /// - `x`, output: `[.., vocab]`; `shift`: `[rows]`; `g`: `x`'s shape without its last axis
    fn picked_log_softmax_backward_in_place(
        x: FloatTensor<Self>,
        _shift: &FloatTensor<Self>,
        _ids: &[u32],
        _g: &FloatTensor<Self>,
    ) -> Result<FloatTensor<Self>, FloatTensor<Self>> {
        Err(x)
    }

    /// [`DualMatmul::picked_log_softmax_kernel`]'s values, differentiable on autodiff backends;
    /// `None` where there is no kernel (the caller takes the whole log-softmax and gathers).
    ///
    /// # Shapes
    /// - `x`: `[.., vocab]`; output: `x`'s shape without its last axis
    fn fused_picked_log_softmax(x: FloatTensor<Self>, ids: &[u32]) -> Option<FloatTensor<Self>> {
        Self::picked_log_softmax_kernel(&x, ids).map(|(y, _)| y)
    }

    /// `w` packed once for [`DualMatmul::packed_matmul_bias`], where the backend has such a
    /// product for it (the ndarray build on AVX-512F or AVX2 + FMA, for a weight read through a
    /// transposed view or stored in contiguous rows); `None` elsewhere (the default).
    ///
    /// # Shapes
    /// - `w`: `[k, n]`
    fn prepack(_w: &FloatTensor<Self>) -> Option<PackedWeight> {
        None
    }

    /// `x · w + bias` for a `w` packed by [`DualMatmul::prepack`]; `None` where it cannot (the
    /// default, or shapes that disagree): the caller then multiplies by `w` itself.
    ///
    /// # Shapes
    /// - `x`: `[.., k]` (rank ≥ 2), `w`: `[k, n]`, `bias`: `[n]`; output: `[.., n]`
    fn packed_matmul_bias(
        _x: &FloatTensor<Self>,
        _w: &PackedWeight,
        _bias: Option<&FloatTensor<Self>>,
    ) -> Option<FloatTensor<Self>> {
        None
    }

    /// `x · w + bias` by the packed `w` where there is one and the backend multiplies by it,
    /// else by `w` ([`DualMatmul::rows_matmul_bias`]).
    ///
    /// # Shapes
    /// - as [`DualMatmul::packed_matmul_bias`]
    fn forward_matmul_bias(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        bias: Option<FloatTensor<Self>>,
        packed: Option<&PackedWeight>,
    ) -> FloatTensor<Self> {
        match packed.and_then(|p| Self::packed_matmul_bias(&x, p, bias.as_ref())) {
            Some(y) => y,
            None => Self::rows_matmul_bias(x, w, bias),
        }
    }

    /// `wᵀ` of a 2-D tensor, materialised row-major in one pass on the backend's memory; `None`
    /// where the backend has no such kernel (the caller goes through the host).
    ///
    /// # Shapes
    /// - `w`: `[r, c]`; output: `[c, r]`
    fn transpose_2d(_w: &FloatTensor<Self>) -> Option<FloatTensor<Self>> {
        None
    }

    /// `x · w + bias`, where `wt()` gives `wᵀ` stored contiguously (called only when the
    /// input gradient will be needed) and neither `w` nor the bias is differentiated (if either
    /// is, the general ops are used).
    ///
    /// `packed`, `w` and `wᵀ` packed by [`DualMatmul::prepack`] where they were, serves
    /// products whose input gradient will be needed (attribution's passes) and their backward
    /// products, and no other: a product that is not differentiated (a prediction, a
    /// measurement after an intervention) reads `w` itself, so that its bits never depend on
    /// whether an attribution packed the weight before. The default (backends without
    /// autodiff) never differentiates, so never reads them.
    ///
    /// # Shapes
    /// - `x`: `[.., k]` (rank ≥ 2), `w`: `[k, n]`, `bias`: `[n]`, `wt()`: `[n, k]`; output:
    ///   `[.., n]`
    fn dual_matmul(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        bias: Option<FloatTensor<Self>>,
        _wt: impl FnOnce() -> FloatTensor<Self>,
        _packed: Packed<'_>,
    ) -> FloatTensor<Self> {
        Self::rows_matmul_bias(x, w, bias)
    }
}

#[cfg(feature = "ndarray")]
impl DualMatmul for burn::backend::NdArray<f32> {
    const KEEP_TRANSPOSE: bool = true;
    const CONCURRENT_PASSES: bool = true;

    fn views_at_full_speed() -> bool {
        super::packed::available()
    }

    fn rows_matmul(x: FloatTensor<Self>, w: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::rows_matmul_bias(x, w, None)
    }

    fn rows_matmul_bias(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        bias: Option<FloatTensor<Self>>,
    ) -> FloatTensor<Self> {
        use burn_ndarray::NdArrayTensor;
        // The reshape of `w` is a view; it fails only for a non-2-D `w`. `gemm::matmul_bias`
        // refuses mismatched inner dimensions and bias lengths.
        if let NdArrayTensor::F32(ws) = &w {
            if let Ok(w2) = ws.view().into_dimensionality::<ndarray::Ix2>() {
                if let Some(y) = rows_product(&x, bias.as_ref(), |x2, b| super::gemm::matmul_bias(x2, w2, b)) {
                    return y;
                }
            }
        }
        add_bias::<Self>(reshaped_matmul::<Self>(x, w), bias)
    }

    fn transpose_2d(w: &FloatTensor<Self>) -> Option<FloatTensor<Self>> {
        use burn_ndarray::NdArrayTensor;
        let NdArrayTensor::F32(ws) = w else { return None };
        let v = ws.view().into_dimensionality::<ndarray::Ix2>().ok()?;
        Some(NdArrayTensor::from(super::gemm::transpose(v).into_dyn().into_shared()))
    }

    fn prepack(w: &FloatTensor<Self>) -> Option<PackedWeight> {
        use burn_ndarray::NdArrayTensor;
        let NdArrayTensor::F32(ws) = w else { return None };
        let v = ws.view().into_dimensionality::<ndarray::Ix2>().ok()?;
        super::packed::Prepacked::new(v).map(|p| PackedWeight(std::sync::Arc::new(p)))
    }

    fn packed_matmul_bias(
        x: &FloatTensor<Self>,
        w: &PackedWeight,
        bias: Option<&FloatTensor<Self>>,
    ) -> Option<FloatTensor<Self>> {
        let packed = w.0.downcast_ref::<super::packed::Prepacked>()?;
        rows_product(x, bias, |x2, b| super::gemm::matmul_prepacked(x2, packed, b))
    }

    fn log_softmax_kernel(x: &FloatTensor<Self>) -> Option<FloatTensor<Self>> {
        use burn_ndarray::NdArrayTensor;
        let NdArrayTensor::F32(xs) = x else { return None };
        Some(NdArrayTensor::from(super::softmax::log_softmax(xs.view())?.into_shared()))
    }

    fn log_softmax_backward_kernel(y: &FloatTensor<Self>, g: &FloatTensor<Self>) -> Option<FloatTensor<Self>> {
        use burn_ndarray::NdArrayTensor;
        let (NdArrayTensor::F32(ys), NdArrayTensor::F32(gs)) = (y, g) else { return None };
        Some(NdArrayTensor::from(super::softmax::log_softmax_backward(ys.view(), gs.view())?.into_shared()))
    }

    fn picked_log_softmax_kernel(x: &FloatTensor<Self>, ids: &[u32]) -> Option<(FloatTensor<Self>, FloatTensor<Self>)> {
        use burn_ndarray::NdArrayTensor;
        let NdArrayTensor::F32(xs) = x else { return None };
        let (y, shift) = super::softmax::picked_log_softmax(xs.view(), ids)?;
        Some((NdArrayTensor::from(y.into_shared()), NdArrayTensor::from(shift.into_shared())))
    }

    fn picked_log_softmax_backward_kernel(
        x: &FloatTensor<Self>,
        shift: &FloatTensor<Self>,
        ids: &[u32],
        g: &FloatTensor<Self>,
    ) -> Option<FloatTensor<Self>> {
        use burn_ndarray::NdArrayTensor;
        let (NdArrayTensor::F32(x), NdArrayTensor::F32(s), NdArrayTensor::F32(g)) = (x, shift, g) else { return None };
        let dx = super::softmax::picked_log_softmax_backward(x.view(), s.view(), ids, g.view())?;
        Some(NdArrayTensor::from(dx.into_shared()))
    }

    fn picked_log_softmax_backward_in_place(
        x: FloatTensor<Self>,
        shift: &FloatTensor<Self>,
        ids: &[u32],
        g: &FloatTensor<Self>,
    ) -> Result<FloatTensor<Self>, FloatTensor<Self>> {
        use burn_ndarray::NdArrayTensor;
        let (NdArrayTensor::F32(s), NdArrayTensor::F32(g)) = (shift, g) else { return Err(x) };
        let NdArrayTensor::F32(storage) = x else { return Err(x) };
        // Unique owned memory only: `into_owned` then moves it, never copies (and writing to a
        // shared array would copy it first).
        if !storage.is_unique() {
            return Err(NdArrayTensor::F32(storage));
        }
        let mut array = storage.into_owned();
        let (s, g) = (s.view(), g.view());
        if !super::softmax::picked_log_softmax_backward_in_place(&mut array.view_mut(), s, ids, g) {
            return Err(NdArrayTensor::from(array));
        }
        Ok(NdArrayTensor::from(array))
    }

    fn attention_kernel(
        q: &FloatTensor<Self>,
        k: &FloatTensor<Self>,
        v: &FloatTensor<Self>,
        bias: Option<&FloatTensor<Self>>,
        scale: f64,
        keep: bool,
    ) -> Option<(FloatTensor<Self>, Option<FloatTensor<Self>>)> {
        use burn_ndarray::NdArrayTensor;
        let (NdArrayTensor::F32(q), NdArrayTensor::F32(k), NdArrayTensor::F32(v)) = (q, k, v) else { return None };
        let bias = match bias {
            Some(NdArrayTensor::F32(b)) => Some(b.view()),
            Some(_) => return None,
            None => None,
        };
        let (ctx, probs) = super::attention_fused::forward(q.view(), k.view(), v.view(), bias, scale as f32, keep)?;
        let wrap = |a: ndarray::ArrayD<f32>| NdArrayTensor::from(a.into_shared());
        Some((wrap(ctx), probs.map(wrap)))
    }

    fn attention_backward_kernel(
        g: &FloatTensor<Self>,
        q: &FloatTensor<Self>,
        k: &FloatTensor<Self>,
        v: &FloatTensor<Self>,
        probs: &FloatTensor<Self>,
        scale: f64,
    ) -> Option<[FloatTensor<Self>; 3]> {
        use burn_ndarray::NdArrayTensor;
        let (
            NdArrayTensor::F32(g),
            NdArrayTensor::F32(q),
            NdArrayTensor::F32(k),
            NdArrayTensor::F32(v),
            NdArrayTensor::F32(p),
        ) = (g, q, k, v, probs)
        else {
            return None;
        };
        let grads = super::attention_fused::backward(g.view(), q.view(), k.view(), v.view(), p.view(), scale as f32)?;
        Some(grads.map(|a| NdArrayTensor::from(a.into_shared())))
    }

    fn norm_kernel(
        x: &FloatTensor<Self>,
        gamma: &FloatTensor<Self>,
        beta: Option<&FloatTensor<Self>>,
        kind: NormKind,
        eps: f64,
        keep: bool,
    ) -> Option<NormOutput<Self>> {
        use burn_ndarray::NdArrayTensor;
        let (NdArrayTensor::F32(xs), NdArrayTensor::F32(gs)) = (x, gamma) else { return None };
        let bs = match beta {
            Some(NdArrayTensor::F32(b)) => Some(b.view()),
            Some(_) => return None,
            None => None,
        };
        let (y, state) = super::norm_fused::forward(xs.view(), gs.view(), bs, kind, eps, keep)?;
        let wrap = |a: ndarray::ArrayD<f32>| NdArrayTensor::from(a.into_shared());
        Some((wrap(y), state.map(|s| (wrap(s.xhat), wrap(s.rstd)))))
    }

    fn norm_backward_kernel(
        g: &FloatTensor<Self>,
        xhat: &FloatTensor<Self>,
        rstd: &FloatTensor<Self>,
        gamma: &FloatTensor<Self>,
        kind: NormKind,
    ) -> Option<FloatTensor<Self>> {
        use burn_ndarray::NdArrayTensor;
        let (NdArrayTensor::F32(g), NdArrayTensor::F32(x), NdArrayTensor::F32(r), NdArrayTensor::F32(w)) =
            (g, xhat, rstd, gamma)
        else {
            return None;
        };
        let dx = super::norm_fused::backward(g.view(), x.view(), r.view(), w.view(), kind)?;
        Some(NdArrayTensor::from(dx.into_shared()))
    }

    fn activation_kernel(
        x: &FloatTensor<Self>,
        act: Activation,
        derivative: bool,
    ) -> Option<(FloatTensor<Self>, Option<FloatTensor<Self>>)> {
        use burn_ndarray::NdArrayTensor;
        let NdArrayTensor::F32(xs) = x else { return None };
        let (y, d) = super::fused::activation(xs.view(), act, derivative)?;
        Some((NdArrayTensor::from(y.into_shared()), d.map(|d| NdArrayTensor::from(d.into_shared()))))
    }
}

#[cfg(feature = "tch")]
impl DualMatmul for burn::backend::LibTorch<f32> {
    const KEEP_TRANSPOSE: bool = false;
}

#[cfg(feature = "wgpu")]
impl DualMatmul for burn::backend::Wgpu<f32, i32> {
    const KEEP_TRANSPOSE: bool = false;
}

#[cfg(feature = "cuda")]
impl DualMatmul for burn::backend::Cuda<f32, i32> {
    const KEEP_TRANSPOSE: bool = false;
}

/// `y + bias` over the last axis of `y` through the backend's broadcast add (`y` itself
/// without a bias).
///
/// # Shapes
/// - `y`: `[.., n]`, `bias`: `[n]`; output: `[.., n]`
fn add_bias<B: Backend>(y: FloatTensor<B>, bias: Option<FloatTensor<B>>) -> FloatTensor<B> {
    let Some(bias) = bias else { return y };
    let mut dims = vec![1; y.shape().num_dims()];
    if let (Some(last), Some(&n)) = (dims.last_mut(), bias.shape().last()) {
        *last = n;
    }
    B::float_add(y, B::float_reshape(bias, Shape::from(dims)))
}

/// `product` of `x` as rows (`[rows, k]`, its leading axes flattened: a view) and the bias as
/// one slice, shaped back to `x`'s leading axes: the frame of the ndarray build's products.
/// `None` for a tensor of another dtype, a strided `x` or bias, or a product that refuses.
///
/// # Shapes
/// - `x`: `[.., k]`, `bias`: `[n]`; `product`'s output `[rows, n]`; output: `[.., n]`
#[cfg(feature = "ndarray")]
fn rows_product(
    x: &burn_ndarray::NdArrayTensor,
    bias: Option<&burn_ndarray::NdArrayTensor>,
    product: impl FnOnce(ndarray::ArrayView2<'_, f32>, Option<&[f32]>) -> Option<ndarray::Array2<f32>>,
) -> Option<burn_ndarray::NdArrayTensor> {
    use burn_ndarray::NdArrayTensor;
    let NdArrayTensor::F32(xs) = x else { return None };
    let bias_view = match bias {
        None => None,
        Some(NdArrayTensor::F32(b)) => Some(b.view()),
        Some(_) => return None,
    };
    let bias_values = match &bias_view {
        None => None,
        Some(v) => Some(v.as_slice()?),
    };
    let xv = xs.view();
    let mut dims = xv.shape().to_vec();
    let k = dims.pop().unwrap_or(1);
    let rows: usize = dims.iter().product();
    let y = product(xv.into_shape_with_order((rows, k)).ok()?, bias_values)?;
    dims.push(y.ncols());
    Some(NdArrayTensor::from(y.into_shape_with_order(ndarray::IxDyn(&dims)).ok()?.into_shared()))
}

/// [`DualMatmul::rows_matmul`] through the backend's own reshape and 2-D product.
fn reshaped_matmul<B: Backend>(x: FloatTensor<B>, w: FloatTensor<B>) -> FloatTensor<B> {
    let mut dims = x.shape().to_vec();
    let k = dims.pop().unwrap_or(1);
    let rows: usize = dims.iter().product();
    let n = w.shape().last().copied().unwrap_or(1);
    let y = B::float_matmul(B::float_reshape(x, Shape::from([rows, k])), w);
    dims.push(n);
    B::float_reshape(y, Shape::from(dims))
}

/// The backward step of a one-input op that keeps one tensor as its state:
/// `grad_x = rule(grad_y, state)`. The rules: `grad_y ⊙ act'(x)` (state `act'(x)`, a fused activation), [`log_softmax_grad`] (state
/// `log softmax(x)`).
#[derive(Debug)]
struct StateGrad<B: DualMatmul>(fn(FloatTensor<B>, FloatTensor<B>) -> FloatTensor<B>);

impl<B: DualMatmul> Backward<B, 1> for StateGrad<B> {
    type State = FloatTensor<B>;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [parent] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        if let Some(node) = parent {
            grads.register::<B>(node.id, (self.0)(grad, ops.state));
        }
    }
}

/// The backward step of `y = x · W` for a constant `W` ([`DualMatmul::dual_matmul`]): its state
/// is `Wᵀ`, and `grad_x = grad_y · Wᵀ`, by the packed `Wᵀ` where there is one.
#[derive(Debug)]
struct MatmulGrad(Option<PackedWeight>);

impl<B: DualMatmul> Backward<B, 1> for MatmulGrad {
    type State = FloatTensor<B>;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [parent] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        if let Some(node) = parent {
            grads.register::<B>(node.id, B::forward_matmul_bias(grad, ops.state, None, self.0.as_ref()));
        }
    }
}

/// The backward step of a fused norm: its state is `(x̂, 1/σ per row, γ)`.
#[derive(Debug)]
struct NormGrad {
    kind: NormKind,
}

impl<B: DualMatmul> Backward<B, 1> for NormGrad {
    type State = (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [parent] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        if let Some(node) = parent {
            let (xhat, rstd, gamma) = ops.state;
            grads.register::<B>(node.id, norm_grad::<B>(grad, xhat, rstd, gamma, self.kind));
        }
    }
}

/// The input gradient of a norm, `(h − mean(h) − x̂ · mean(h ⊙ x̂)) / σ` with `h = g ⊙ γ`
/// (RMSNorm without `mean(h)`), from the backend's kernel, else from its primitives.
fn norm_grad<B: DualMatmul>(
    g: FloatTensor<B>,
    xhat: FloatTensor<B>,
    rstd: FloatTensor<B>,
    gamma: FloatTensor<B>,
    kind: NormKind,
) -> FloatTensor<B> {
    if let Some(dx) = B::norm_backward_kernel(&g, &xhat, &rstd, &gamma, kind) {
        return dx;
    }
    let dims = g.shape().to_vec();
    let last = dims.len() - 1;
    let mut one_row = vec![1; dims.len()];
    one_row[last] = dims[last];
    let mut per_row = dims.clone();
    per_row[last] = 1;
    let h = B::float_mul(g, B::float_reshape(gamma, Shape::from(one_row)));
    let mean_hx = B::float_mean_dim(B::float_mul(h.clone(), xhat.clone()), last);
    let mut centred = B::float_sub(h.clone(), B::float_mul(xhat, mean_hx));
    if kind == NormKind::Layer {
        centred = B::float_sub(centred, B::float_mean_dim(h, last));
    }
    B::float_mul(centred, B::float_reshape(rstd, Shape::from(per_row)))
}

/// The backward step of a fused attention core: its state is `(q, k, v, probabilities)`.
#[derive(Debug)]
struct AttentionGrad {
    scale: f64,
}

impl<B: DualMatmul> Backward<B, 3> for AttentionGrad {
    type State = (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>, FloatTensor<B>);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let parents = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (q, k, v, probs) = ops.state;
        let dqkv = attention_grad::<B>(grad, q, k, v, probs, self.scale);
        for (parent, d) in parents.into_iter().zip(dqkv) {
            if let Some(node) = parent {
                grads.register::<B>(node.id, d);
            }
        }
    }
}

/// The gradients of the attention core with respect to `q`, `k`, `v` (see
/// [`DualMatmul::attention_backward_kernel`]), from the backend's kernel, else from its
/// primitives.
fn attention_grad<B: DualMatmul>(
    g: FloatTensor<B>,
    q: FloatTensor<B>,
    k: FloatTensor<B>,
    v: FloatTensor<B>,
    p: FloatTensor<B>,
    scale: f64,
) -> [FloatTensor<B>; 3] {
    if let Some(grads) = B::attention_backward_kernel(&g, &q, &k, &v, &p, scale) {
        return grads;
    }
    let broadcast = k.shape()[0] == 1 && q.shape()[0] > 1;
    let dv = B::float_matmul(B::float_swap_dims(p.clone(), 2, 3), g.clone());
    let dp = B::float_matmul(g, B::float_swap_dims(v, 2, 3));
    let weighted = B::float_sum_dim(B::float_mul(dp.clone(), p.clone()), 3);
    let ds = B::float_mul_scalar(B::float_mul(p, B::float_sub(dp, weighted)), burn::tensor::Scalar::Float(scale));
    let dq = B::float_matmul(ds.clone(), k);
    let dk = B::float_matmul(B::float_swap_dims(ds, 2, 3), q);
    if broadcast {
        [dq, B::float_sum_dim(dk, 0), B::float_sum_dim(dv, 0)]
    } else {
        [dq, dk, dv]
    }
}

/// The backward step of a picked log-softmax: its state is `(x, the rows' normalisers)`.
#[derive(Debug)]
struct PickedGrad {
    ids: Vec<u32>,
}

impl<B: DualMatmul> Backward<B, 1> for PickedGrad {
    type State = (FloatTensor<B>, FloatTensor<B>);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [parent] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        if let Some(node) = parent {
            let (x, shift) = ops.state;
            grads.register::<B>(node.id, picked_grad::<B>(x, shift, &self.ids, grad));
        }
    }
}

/// The input gradient of a picked log-softmax, `g_r · (onehot(ids[r]) − exp(x_r − shift_r))`
/// per row, from the backend's kernel, else from its primitives.
fn picked_grad<B: DualMatmul>(
    x: FloatTensor<B>,
    shift: FloatTensor<B>,
    ids: &[u32],
    g: FloatTensor<B>,
) -> FloatTensor<B> {
    let x = match B::picked_log_softmax_backward_in_place(x, &shift, ids, &g) {
        Ok(dx) => return dx,
        Err(x) => x,
    };
    if let Some(dx) = B::picked_log_softmax_backward_kernel(&x, &shift, ids, &g) {
        return dx;
    }
    let dims = x.shape().to_vec();
    let width = dims.last().copied().unwrap_or(1);
    let rows = ids.len();
    let device = B::float_device(&x);
    let flat = B::float_reshape(x, Shape::from([rows, width]));
    let g = B::float_reshape(g, Shape::from([rows, 1]));
    let probs = B::float_exp(B::float_sub(flat, B::float_reshape(shift, Shape::from([rows, 1]))));
    let mut onehot = vec![0.0f32; rows * width];
    for (r, &t) in ids.iter().enumerate() {
        if let Some(o) = onehot.get_mut(r * width + t as usize) {
            *o = 1.0;
        }
    }
    let onehot = B::float_from_data(burn::tensor::TensorData::new(onehot, [rows, width]), &device);
    B::float_reshape(B::float_mul(B::float_sub(onehot, probs), g), Shape::from(dims))
}

/// The input gradient of `y = log softmax(x)`: `g − exp(y) · Σ g`, from the backend's kernel,
/// else from its primitives.
fn log_softmax_grad<B: DualMatmul>(g: FloatTensor<B>, y: FloatTensor<B>) -> FloatTensor<B> {
    match B::log_softmax_backward_kernel(&y, &g) {
        Some(dx) => dx,
        None => {
            let last = y.shape().num_dims() - 1;
            let total = B::float_sum_dim(g.clone(), last);
            B::float_sub(g, B::float_mul(B::float_exp(y), total))
        }
    }
}

impl<B: DualMatmul, C: CheckpointStrategy> DualMatmul for Autodiff<B, C> {
    const KEEP_TRANSPOSE: bool = B::KEEP_TRANSPOSE;
    const CONCURRENT_PASSES: bool = B::CONCURRENT_PASSES;

    fn views_at_full_speed() -> bool {
        B::views_at_full_speed()
    }

    fn transpose_2d(w: &FloatTensor<Self>) -> Option<FloatTensor<Self>> {
        use burn::tensor::backend::AutodiffBackend as _;
        B::transpose_2d(&w.primitive).map(Self::from_inner)
    }

    fn fused_log_softmax(x: FloatTensor<Self>) -> Option<FloatTensor<Self>> {
        match StateGrad::<B>(log_softmax_grad::<B>).prepare::<C>([x.node.clone()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let y = B::log_softmax_kernel(&x.primitive)?;
                Some(prep.finish(y.clone(), y))
            }
            OpsKind::UnTracked(prep) => Some(prep.finish(B::log_softmax_kernel(&x.primitive)?)),
        }
    }

    fn fused_picked_log_softmax(x: FloatTensor<Self>, ids: &[u32]) -> Option<FloatTensor<Self>> {
        match (PickedGrad { ids: ids.to_vec() }).prepare::<C>([x.node.clone()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let (y, shift) = B::picked_log_softmax_kernel(&x.primitive, ids)?;
                Some(prep.finish((x.primitive, shift), y))
            }
            OpsKind::UnTracked(prep) => Some(prep.finish(B::picked_log_softmax_kernel(&x.primitive, ids)?.0)),
        }
    }

    fn fused_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        bias: Option<&FloatTensor<Self>>,
        scale: f64,
    ) -> Option<FloatTensor<Self>> {
        if bias.is_some_and(|b| b.is_tracked()) {
            return None;
        }
        let bias = bias.map(|b| &b.primitive);
        let parents = [q.node.clone(), k.node.clone(), v.node.clone()];
        match (AttentionGrad { scale }).prepare::<C>(parents).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let (ctx, probs) = B::attention_kernel(&q.primitive, &k.primitive, &v.primitive, bias, scale, true)?;
                Some(prep.finish((q.primitive, k.primitive, v.primitive, probs?), ctx))
            }
            OpsKind::UnTracked(prep) => {
                Some(prep.finish(B::attention_kernel(&q.primitive, &k.primitive, &v.primitive, bias, scale, false)?.0))
            }
        }
    }

    fn fused_norm(
        x: FloatTensor<Self>,
        gamma: &FloatTensor<Self>,
        beta: Option<&FloatTensor<Self>>,
        kind: NormKind,
        eps: f64,
    ) -> Option<FloatTensor<Self>> {
        if gamma.is_tracked() || beta.is_some_and(|b| b.is_tracked()) {
            // Someone differentiates the norm's parameters: the composed norm handles them.
            return None;
        }
        let beta = beta.map(|b| &b.primitive);
        match (NormGrad { kind }).prepare::<C>([x.node.clone()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let (y, state) = B::norm_kernel(&x.primitive, &gamma.primitive, beta, kind, eps, true)?;
                let (xhat, rstd) = state?;
                Some(prep.finish((xhat, rstd, gamma.primitive.clone()), y))
            }
            OpsKind::UnTracked(prep) => {
                Some(prep.finish(B::norm_kernel(&x.primitive, &gamma.primitive, beta, kind, eps, false)?.0))
            }
        }
    }

    fn fused_activation(x: FloatTensor<Self>, act: Activation) -> Option<FloatTensor<Self>> {
        match StateGrad::<B>(B::float_mul).prepare::<C>([x.node.clone()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let (y, d) = B::activation_kernel(&x.primitive, act, true)?;
                Some(prep.finish(d?, y))
            }
            OpsKind::UnTracked(prep) => Some(prep.finish(B::activation_kernel(&x.primitive, act, false)?.0)),
        }
    }

    fn prepack(w: &FloatTensor<Self>) -> Option<PackedWeight> {
        B::prepack(&w.primitive)
    }

    fn dual_matmul(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        bias: Option<FloatTensor<Self>>,
        wt: impl FnOnce() -> FloatTensor<Self>,
        packed: Packed<'_>,
    ) -> FloatTensor<Self> {
        if w.is_tracked() || bias.as_ref().is_some_and(|b| b.is_tracked()) {
            // Someone differentiates the weights: the general product and add handle every
            // operand.
            return Self::rows_matmul_bias(x, w, bias);
        }
        let bias = bias.map(|b| b.primitive);
        match MatmulGrad(packed.backward.cloned()).prepare::<C>([x.node.clone()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                prep.finish(wt().primitive, B::forward_matmul_bias(x.primitive, w.primitive, bias, packed.forward))
            }
            OpsKind::UnTracked(prep) => prep.finish(B::rows_matmul_bias(x.primitive, w.primitive, bias)),
        }
    }
}

#[cfg(all(test, feature = "ndarray"))]
mod tests {
    use burn::tensor::{Tensor, TensorData};

    use crate::nn::Linear;

    type AB = crate::backend::AutodiffBackend;

    fn tensor<const D: usize>(n: usize, shape: [usize; D], seed: f32) -> Tensor<AB, D> {
        let v: Vec<f32> = (0..n).map(|i| ((i as f32 * 0.37 + seed).sin() * 10.0).round() / 10.0).collect();
        Tensor::from_data(TensorData::new(v, shape), &Default::default())
    }

    /// `x·W` and its input gradient through `lin`, and through burn's general product.
    fn products(lin: &Linear<AB>, w: Tensor<AB, 2>, rows: usize) -> [Vec<f32>; 4] {
        let [d_in, d_out] = w.dims();
        let x = tensor(rows * d_in, [1, rows, d_in], 2.0).require_grad();
        let g = tensor(rows * d_out, [1, rows, d_out], 3.0);
        let y = lin.forward(x.clone());
        let grads = (y.clone() * g.clone()).sum().backward();
        let fast = x.grad(&grads).unwrap();
        let x2 = tensor(rows * d_in, [1, rows, d_in], 2.0).require_grad();
        let y2 = x2.clone().reshape([rows, d_in]).matmul(w).reshape([1, rows, d_out]);
        let grads2 = (y2.clone() * g).sum().backward();
        let plain = x2.grad(&grads2).unwrap();
        [y, y2]
            .map(|t| t.into_data().to_vec::<f32>().unwrap())
            .into_iter()
            .chain([fast, plain].map(|t| t.into_data().to_vec::<f32>().unwrap()))
            .collect::<Vec<_>>()
            .try_into()
            .unwrap()
    }

    #[test]
    fn input_gradient_equals_the_general_matmul() {
        // A square map multiplies by a built contiguous Wᵀ (bit for bit burn's product), or by
        // a view of W where views run at full speed (the same sums in another order: within
        // one rounding of the largest term).
        let w = tensor(16, [4, 4], 1.0);
        let [y, y2, fast, plain] = products(&Linear::new(w.clone(), None), w, 2);
        assert_eq!(y, y2);
        if <AB as super::DualMatmul>::views_at_full_speed() {
            let worst = fast.iter().zip(&plain).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
            eprintln!("input gradient through a view of W: max error {worst:e}");
            assert!(worst <= 1e-5, "{fast:?} vs {plain:?}");
        } else {
            assert_eq!(fast, plain);
        }
    }

    #[test]
    fn every_kept_layout_gives_the_general_products() {
        // Where views run at full speed a map keeps the layout it is given; elsewhere expanding
        // maps keep Wᵀ, contracting ones W, square ones W and a built Wᵀ; from a host weight in
        // either layout. Values are multiples of 0.1 summed over ≤ 40 terms: the kernels'
        // summation orders may differ in the last bits only.
        for (d_in, d_out) in [(8, 40), (40, 8), (16, 16)] {
            let w = tensor(d_in * d_out, [d_in, d_out], 1.0);
            let raw = crate::weights::RawTensor {
                shape: vec![d_in, d_out],
                data: w.clone().into_data().to_vec::<f32>().unwrap(),
            };
            let device = Default::default();
            for lin in [
                Linear::<AB>::from_raw(raw.clone(), None, &device),
                Linear::from_raw_transposed(raw.transposed(), None, &device),
            ] {
                assert_eq!(lin.weight().into_data().to_vec::<f32>().unwrap(), raw.data, "{d_in}x{d_out}: weight()");
                let [y, y2, fast, plain] = products(&lin, w.clone(), 5);
                for (a, b) in y.iter().zip(&y2).chain(fast.iter().zip(&plain)) {
                    assert!((a - b).abs() <= 1e-4 * b.abs().max(1.0), "{d_in}x{d_out}: {a} vs {b}");
                }
            }
        }
    }

    #[test]
    fn a_fused_bias_gives_the_composed_forward_and_gradients() {
        // The bias written into the product's output (ndarray) against `x·W + b` through burn's
        // general ops, in every kept layout, with rows on both sides of the column-major
        // threshold; then a tracked bias, which takes the general path and gets its gradient.
        let device = Default::default();
        for (d_in, d_out) in [(8, 40), (40, 8), (16, 16)] {
            for rows in [5, 70] {
                let w = tensor(d_in * d_out, [d_in, d_out], 1.0);
                let b = tensor(d_out, [d_out], 4.0);
                let raw = crate::weights::RawTensor {
                    shape: vec![d_in, d_out],
                    data: w.clone().into_data().to_vec::<f32>().unwrap(),
                };
                let lin = Linear::<AB>::from_raw(raw, Some(b.clone()), &device);
                let x = tensor(rows * d_in, [1, rows, d_in], 2.0).require_grad();
                let g = tensor(rows * d_out, [1, rows, d_out], 3.0);
                let y = lin.forward(x.clone());
                let grads = (y.clone() * g.clone()).sum().backward();
                let fast = x.grad(&grads).unwrap().into_data().to_vec::<f32>().unwrap();
                let x2 = tensor(rows * d_in, [1, rows, d_in], 2.0).require_grad();
                let y2 = x2.clone().reshape([rows, d_in]).matmul(w.clone()).reshape([1, rows, d_out])
                    + b.clone().unsqueeze::<3>();
                let grads2 = (y2.clone() * g).sum().backward();
                let plain = x2.grad(&grads2).unwrap().into_data().to_vec::<f32>().unwrap();
                let (y, y2) = (y.into_data().to_vec::<f32>().unwrap(), y2.into_data().to_vec::<f32>().unwrap());
                let rel = |a: &[f32], b: &[f32]| {
                    a.iter().zip(b).map(|(a, b)| (a - b).abs() / b.abs().max(1.0)).fold(0.0f32, f32::max)
                };
                let (ey, eg) = (rel(&y, &y2), rel(&fast, &plain));
                eprintln!("fused bias {d_in}x{d_out}, {rows} rows: output {ey:e}, input gradient {eg:e}");
                assert!(ey <= 1e-5 && eg <= 1e-5, "{d_in}x{d_out}, {rows} rows: {ey} {eg}");
            }
        }
        let w = tensor(8 * 40, [8, 40], 1.0);
        let lin = Linear::<AB>::new(w, Some(tensor(40, [40], 4.0).require_grad()));
        let grads = lin.forward(tensor(3 * 8, [1, 3, 8], 2.0)).sum().backward();
        let db = lin.bias.as_ref().unwrap().grad(&grads).expect("the tracked bias has a gradient");
        assert_eq!(db.into_data().to_vec::<f32>().unwrap(), vec![3.0; 40], "d/db Σ y = the row count");
    }

    #[test]
    fn the_transpose_is_built_only_for_a_backward_pass() {
        // Only a square map builds one, and only where views do not run at full speed;
        // expanding maps keep Wᵀ, contracting ones read a view.
        let builds = !<AB as super::DualMatmul>::views_at_full_speed();
        let lin = Linear::new(tensor(16, [4, 4], 1.0), None);
        lin.forward(tensor(8, [1, 2, 4], 2.0));
        assert!(!lin.has_transpose(), "a forward pass without gradients built Wᵀ");
        let x = tensor(8, [1, 2, 4], 2.0).require_grad();
        lin.forward(x).sum().backward();
        assert_eq!(lin.has_transpose(), builds, "views at full speed: {}", !builds);
        let contracting = Linear::new(tensor(12, [4, 3], 1.0), None);
        contracting.forward(tensor(8, [1, 2, 4], 2.0).require_grad()).sum().backward();
        assert!(!contracting.has_transpose(), "a contracting map copied its weight");
        // A map given as Wᵀ keeps it where views run at full speed: nothing to build.
        let raw = crate::weights::RawTensor { shape: vec![4, 4], data: (0..16).map(|i| i as f32).collect() };
        let given_t = Linear::<AB>::from_raw_transposed(raw, None, &Default::default());
        assert_eq!(given_t.has_transpose(), !builds, "a square map given as Wᵀ");
    }

    #[test]
    fn set_weight_keeps_the_transpose_in_step() {
        // A square map, whose built Wᵀ (where one is built) would go stale: build it, then
        // replace the weight.
        let mut lin = Linear::new(tensor(16, [4, 4], 1.0), None);
        lin.forward(tensor(4, [1, 1, 4], 2.0).require_grad()).sum().backward();
        assert_eq!(lin.has_transpose(), !<AB as super::DualMatmul>::views_at_full_speed());
        let w2 = tensor(16, [4, 4], 5.0);
        lin.set_weight(w2.clone());
        let x = tensor(4, [1, 1, 4], 2.0).require_grad();
        let grads = lin.forward(x.clone()).sum().backward();
        let g = x.grad(&grads).unwrap().into_data().to_vec::<f32>().unwrap();
        // d/dx Σ_j (x·W)_j = row sums of W.
        let w = w2.inner().into_data().to_vec::<f32>().unwrap();
        let expected: Vec<f32> = (0..4).map(|i| w[i * 4..i * 4 + 4].iter().sum()).collect();
        // Within rounding (the product may sum in another order); a stale Wᵀ is off by units.
        assert!(g.iter().zip(&expected).all(|(a, b)| (a - b).abs() <= 1e-5), "{g:?} vs {expected:?}");
    }

    #[test]
    fn a_packed_weight_gives_the_general_products_and_goes_with_set_weight() {
        // A head-like map kept as Wᵀ (a vocabulary wider than one packed block), packed once:
        // forward and input gradient as burn's general product, with and without a bias; then a
        // new weight drops the packed copy, and the products follow the new weight.
        let (d_in, d_out, rows) = (24, 1100, 7);
        let device = Default::default();
        for with_bias in [false, true] {
            let w = tensor(d_in * d_out, [d_in, d_out], 1.0);
            let raw = crate::weights::RawTensor {
                shape: vec![d_in, d_out],
                data: w.clone().into_data().to_vec::<f32>().unwrap(),
            };
            let bias = with_bias.then(|| tensor(d_out, [d_out], 4.0));
            let mut lin = Linear::<AB>::from_raw_transposed(raw.transposed(), bias.clone(), &device);
            lin.prepare_packed();
            assert_eq!(
                lin.is_packed(),
                <AB as super::DualMatmul>::views_at_full_speed(),
                "packed where views run at full speed"
            );
            let check = |lin: &Linear<AB>, w: Tensor<AB, 2>| {
                let [y, y2, fast, plain] = products(lin, w, rows);
                let y2: Vec<f32> = match &bias {
                    Some(b) => {
                        let b = b.clone().into_data().to_vec::<f32>().unwrap();
                        y2.iter().enumerate().map(|(i, v)| v + b[i % d_out]).collect()
                    }
                    None => y2,
                };
                let worst = y
                    .iter()
                    .zip(&y2)
                    .chain(fast.iter().zip(&plain))
                    .map(|(a, b)| (a - b).abs() / b.abs().max(1.0))
                    .fold(0.0f32, f32::max);
                eprintln!("packed {d_in}x{d_out}, bias {with_bias}: max relative error {worst:e}");
                assert!(worst <= 1e-5, "bias {with_bias}: {worst}");
            };
            check(&lin, w);
            // A forward that is not differentiated reads the weight itself: the bits of a map
            // never packed.
            let plain_lin = Linear::<AB>::from_raw_transposed(raw.transposed(), bias.clone(), &device);
            let x = tensor(rows * d_in, [1, rows, d_in], 2.0);
            let bits = |l: &Linear<AB>| l.forward(x.clone()).into_data().to_vec::<f32>().unwrap();
            assert_eq!(bits(&lin), bits(&plain_lin), "an untracked forward by a packed map");
            let w2 = tensor(d_in * d_out, [d_in, d_out], 7.0);
            lin.set_weight(w2.clone());
            assert!(!lin.is_packed(), "set_weight drops the packed copy");
            check(&lin, w2.clone());
            lin.prepare_packed();
            check(&lin, w2);
        }
    }

    #[test]
    fn fused_attention_equals_the_composed_core_with_gradients() {
        use crate::nn::DualMatmul;
        use burn::tensor::{activation::softmax, TensorPrimitive};
        // Two bias rows repeated over four query rows; keys and values of batch 1 broadcast.
        for kv_batch in [2, 1] {
            let run = |fused: bool| {
                let q = tensor(2 * 3 * 4 * 5, [2, 3, 4, 5], 0.1).require_grad();
                let k = tensor(kv_batch * 3 * 6 * 5, [kv_batch, 3, 6, 5], 1.1).require_grad();
                let v = tensor(kv_batch * 3 * 6 * 5, [kv_batch, 3, 6, 5], 2.1).require_grad();
                let bias = tensor(2 * 6, [1, 1, 2, 6], 0.7);
                let ctx = if fused {
                    let p = |t: &Tensor<AB, 4>| t.clone().into_primitive().tensor();
                    let out =
                        AB::fused_attention(p(&q), p(&k), p(&v), Some(&p(&bias)), 0.4).expect("ndarray has the kernel");
                    Tensor::<AB, 4>::from_primitive(TensorPrimitive::Float(out))
                } else {
                    let scores = q.clone().matmul(k.clone().swap_dims(2, 3)) * 0.4 + bias.repeat_dim(2, 2);
                    softmax(scores, 3).matmul(v.clone())
                };
                let g = tensor(2 * 3 * 4 * 5, [2, 3, 4, 5], 3.3);
                let grads = (ctx.clone() * g).sum().backward();
                let flat = |t: Tensor<AB, 4>| t.into_data().to_vec::<f32>().unwrap();
                let d = |t: &Tensor<AB, 4>| t.grad(&grads).unwrap().into_data().to_vec::<f32>().unwrap();
                (flat(ctx), d(&q), d(&k), d(&v))
            };
            let (a, b) = (run(true), run(false));
            let err = |x: &[f32], y: &[f32]| x.iter().zip(y).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
            let errs = [err(&a.0, &b.0), err(&a.1, &b.1), err(&a.2, &b.2), err(&a.3, &b.3)];
            eprintln!("fused vs composed attention (kv batch {kv_batch}): ctx, dq, dk, dv {errs:?}");
            assert!(errs.iter().all(|&e| e <= 1e-5), "{errs:?}");
        }
    }
}
