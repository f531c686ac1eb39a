//! Addressing a single FFN neuron.

use serde::{Deserialize, Serialize};
use std::fmt;

/// One FFN neuron: the `index`-th post-activation unit of layer `layer`
/// (TransformerLens `blocks.{layer}.mlp.hook_post[..., index]`).
///
/// Serialises as the pair `[layer, index]`, the format of the Python library's neuron files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(from = "(usize, usize)", into = "(usize, usize)")]
pub struct NeuronId {
    /// Layer (0-based).
    pub layer: usize,
    /// Index inside the layer's FFN (0-based, `< d_ff`).
    pub index: usize,
}

impl NeuronId {
    /// A neuron at `(layer, index)`.
    pub fn new(layer: usize, index: usize) -> Self {
        Self { layer, index }
    }
}

impl From<(usize, usize)> for NeuronId {
    fn from((layer, index): (usize, usize)) -> Self {
        Self { layer, index }
    }
}

impl From<NeuronId> for (usize, usize) {
    fn from(n: NeuronId) -> Self {
        (n.layer, n.index)
    }
}

impl fmt::Display for NeuronId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "blocks.{}.mlp.hook_post[{}]", self.layer, self.index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neuron_serialises_as_a_pair() {
        let n = NeuronId::new(3, 17);
        assert_eq!(serde_json::to_string(&n).unwrap(), "[3,17]");
        let back: NeuronId = serde_json::from_str("[3,17]").unwrap();
        assert_eq!(back, n);
        assert_eq!(n.to_string(), "blocks.3.mlp.hook_post[17]");
    }
}
