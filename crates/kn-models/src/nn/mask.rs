//! Attention masks: which keys each query may see, built per layer from data so that local
//! attention adds no parameters.

use burn::tensor::{backend::Backend, Tensor, TensorData};

use kn_core::ModelInput;

/// Value added to the scores of masked keys (exp underflows to exactly 0 in f32).
const MASKED: f32 = -1.0e9;

/// The attention pattern of one layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum AttentionKind {
    /// Every query sees every (non-padding) key (BERT).
    Bidirectional,
    /// Query `i` sees keys `j <= i` (GPT-2, GPT-Neo global layers).
    Causal,
    /// Query `i` sees keys `i - window < j <= i` (GPT-Neo local layers).
    CausalLocal {
        /// Number of keys visible, the query's own position included.
        window: usize,
    },
}

impl AttentionKind {
    /// Additive bias for the attention scores: 0 where allowed, a large negative number where not.
    ///
    /// `q_offset` is the absolute position of the first query row (non-zero when only the last
    /// rows are recomputed against cached keys).
    ///
    /// # Shapes
    /// - output: `[batch_or_1, 1, n_q, n_k]`, `None` when nothing is masked.
    pub fn bias<B: Backend>(
        self,
        input: &ModelInput<B>,
        n_q: usize,
        n_k: usize,
        q_offset: usize,
        device: &B::Device,
    ) -> Option<Tensor<B, 4>> {
        let pattern = match self {
            Self::Bidirectional => None,
            Self::Causal | Self::CausalLocal { .. } => {
                let mut data = vec![0.0f32; n_q * n_k];
                for i in 0..n_q {
                    let qi = i + q_offset;
                    for j in 0..n_k {
                        let visible = match self {
                            Self::CausalLocal { window } => j <= qi && qi - j < window,
                            _ => j <= qi,
                        };
                        if !visible {
                            data[i * n_k + j] = MASKED;
                        }
                    }
                }
                Some(Tensor::<B, 2>::from_data(TensorData::new(data, [n_q, n_k]), device).reshape([1, 1, n_q, n_k]))
            }
        };
        let padding = input.attention_mask.as_ref().map(|m| {
            let [b, s] = m.dims();
            ((m.clone() - 1.0) * (-MASKED)).reshape([b, 1, 1, s])
        });
        match (pattern, padding) {
            (Some(p), Some(m)) => Some(p + m),
            (p, m) => p.or(m),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    type B = crate::backend::Inner;

    fn visible(kind: AttentionKind, n: usize) -> Vec<Vec<bool>> {
        let dev = Default::default();
        let input = ModelInput::<B>::from_ids(&vec![1; n], &dev);
        let bias = kind.bias(&input, n, n, 0, &dev).map(|b| b.into_data().to_vec::<f32>().unwrap());
        (0..n).map(|i| (0..n).map(|j| bias.as_ref().map_or(true, |b| b[i * n + j] == 0.0)).collect()).collect()
    }

    #[test]
    fn local_window_sees_only_the_last_w_positions() {
        let v = visible(AttentionKind::CausalLocal { window: 2 }, 4);
        assert_eq!(v[3], vec![false, false, true, true]);
        assert_eq!(v[0], vec![true, false, false, false]);
    }

    #[test]
    fn causal_hides_the_future() {
        let v = visible(AttentionKind::Causal, 3);
        assert_eq!(v[1], vec![true, true, false]);
        assert_eq!(visible(AttentionKind::Bidirectional, 2), vec![vec![true; 2]; 2]);
    }

    #[test]
    fn padding_masks_keys() {
        let dev = Default::default();
        let input = ModelInput::<B>::from_batch(&[vec![1, 2, 3], vec![1]], 0, &dev);
        let bias = AttentionKind::Bidirectional.bias(&input, 3, 3, 0, &dev).unwrap();
        assert_eq!(bias.dims(), [2, 1, 1, 3]);
        let v = bias.into_data().to_vec::<f32>().unwrap();
        assert_eq!(v[..3], [0.0, 0.0, 0.0]);
        assert_eq!(v[3], 0.0);
        assert!(v[4] < -1e8 && v[5] < -1e8);
    }
}
