//! Quadrature rules for the integrated-gradients path integral `∫₀¹ ∇f(α a) dα`.

use serde::{Deserialize, Serialize};

/// How the path integral is discretised into `steps` points `α_k` with weights `w_k`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Quadrature {
    /// EleutherAI's rule: `α = linspace(0, 1, m)` (both ends), weights `1/m` (the default, for
    /// comparability with the Python library).
    #[default]
    EaiLinspace,
    /// Left Riemann sum `α = k/m, k = 0..m-1` (the paper authors' code).
    Left,
    /// Right Riemann sum `α = k/m, k = 1..m`.
    Right,
    /// Midpoint rule `α = (k + ½)/m`.
    Midpoint,
    /// Trapezoid rule on `linspace(0, 1, m)`.
    Trapezoid,
}

impl Quadrature {
    /// The points and weights for `m` steps (`m ≥ 1`; the trapezoid needs `m ≥ 2` and falls back
    /// to the midpoint rule below that).
    pub fn points(self, m: usize) -> Vec<(f32, f32)> {
        let mf = m as f64;
        let lin = |k: usize| if m > 1 { k as f64 / (mf - 1.0) } else { 0.0 };
        let pts: Vec<(f64, f64)> = match self {
            Self::EaiLinspace => (0..m).map(|k| (lin(k), 1.0 / mf)).collect(),
            Self::Left => (0..m).map(|k| (k as f64 / mf, 1.0 / mf)).collect(),
            Self::Right => (1..=m).map(|k| (k as f64 / mf, 1.0 / mf)).collect(),
            Self::Midpoint => (0..m).map(|k| ((k as f64 + 0.5) / mf, 1.0 / mf)).collect(),
            Self::Trapezoid if m >= 2 => (0..m)
                .map(|k| {
                    let w = 1.0 / (mf - 1.0);
                    (lin(k), if k == 0 || k == m - 1 { w / 2.0 } else { w })
                })
                .collect(),
            Self::Trapezoid => return Self::Midpoint.points(m),
        };
        pts.into_iter().map(|(a, w)| (a as f32, w as f32)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eai_rule_is_linspace_with_equal_weights() {
        let p = Quadrature::EaiLinspace.points(5);
        assert_eq!(p.iter().map(|x| x.0).collect::<Vec<_>>(), vec![0.0, 0.25, 0.5, 0.75, 1.0]);
        assert!(p.iter().all(|x| (x.1 - 0.2).abs() < 1e-7));
    }

    #[test]
    fn consistent_rules_have_weights_summing_to_one() {
        for q in [Quadrature::Left, Quadrature::Right, Quadrature::Midpoint, Quadrature::Trapezoid] {
            let s: f32 = q.points(7).iter().map(|x| x.1).sum();
            assert!((s - 1.0).abs() < 1e-6, "{q:?}: {s}");
        }
        assert_eq!(Quadrature::Right.points(4).last().unwrap().0, 1.0);
        assert_eq!(Quadrature::Left.points(4)[0].0, 0.0);
    }
}
