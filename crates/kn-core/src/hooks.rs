//! Hooks on the FFN post-activation (`blocks.{l}.mlp.hook_post`).

use burn::tensor::{backend::Backend, Tensor};

/// Sees, and may replace, the FFN post-activation of every layer during a forward pass.
pub trait FfnHook<B: Backend> {
    /// Called once per layer, in order.
    ///
    /// # Shapes
    /// - `act` and output: `[batch, seq, d_ff]`
    fn on_ffn(&mut self, layer: usize, act: Tensor<B, 3>) -> Tensor<B, 3>;
}

/// Leaves every activation unchanged.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoHook;

impl<B: Backend> FfnHook<B> for NoHook {
    fn on_ffn(&mut self, _layer: usize, act: Tensor<B, 3>) -> Tensor<B, 3> {
        act
    }
}

/// Records every layer's activation (unchanged).
#[derive(Debug, Clone)]
pub struct Capture<B: Backend> {
    /// `acts[l]`: layer `l`'s activation, `[batch, seq, d_ff]`.
    pub acts: Vec<Tensor<B, 3>>,
}

impl<B: Backend> Default for Capture<B> {
    fn default() -> Self {
        Self { acts: Vec::new() }
    }
}

impl<B: Backend> FfnHook<B> for Capture<B> {
    fn on_ffn(&mut self, _layer: usize, act: Tensor<B, 3>) -> Tensor<B, 3> {
        self.acts.push(act.clone());
        act
    }
}
