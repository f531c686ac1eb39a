//! A small model with knowledge planted analytically in known FFN neurons: the end-to-end check
//! that attribution, selection and interventions find and control stored facts.
//!
//! Tokens are one-hot in the residual stream (`d_model = vocab`). The first layer's "attention"
//! adds the mean over positions (so the subject reaches the `[MASK]` position), its FFN is
//! `relu(x W_in + b_in) W_out`, and the logits are the residual stream itself. Fact `f` (subject
//! `S_f` → object `O_f`) is stored in its own neurons: `W_in[S_f, n] = gain_in`,
//! `b_in[n] = −bias`, `W_out[n, O_f] = gain_out`. Every other neuron is a random distractor
//! that reads no object direction and writes no subject direction.

use burn::tensor::{activation::relu, backend::Backend, Tensor, TensorData};

use crate::{KnowledgeModel, ModelDims, ModelInput, NeuronId, Objective};

/// Padding token id.
pub const PAD: u32 = 0;
/// Mask token id.
pub const MASK: u32 = 1;

/// One planted fact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlantedFact {
    /// Subject token.
    pub subject: u32,
    /// Object token.
    pub object: u32,
    /// The neurons that store it.
    pub neurons: Vec<NeuronId>,
}

/// Sizes of a planted model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlantedSpec {
    /// Number of facts.
    pub n_facts: usize,
    /// Neurons per fact (spread over layers).
    pub neurons_per_fact: usize,
    /// Filler ("template") tokens for writing prompts.
    pub n_templates: usize,
    /// Layers.
    pub n_layers: usize,
    /// Neurons per layer (planted + distractors).
    pub d_ff: usize,
    /// Seed of the distractor weights.
    pub seed: u64,
}

impl Default for PlantedSpec {
    fn default() -> Self {
        Self { n_facts: 6, neurons_per_fact: 2, n_templates: 6, n_layers: 3, d_ff: 24, seed: 7 }
    }
}

/// The planted model.
#[derive(Debug, Clone)]
pub struct PlantedModel<B: Backend> {
    w_in: Vec<Tensor<B, 2>>,
    b_in: Vec<Tensor<B, 1>>,
    w_out: Vec<Tensor<B, 2>>,
    embed: Tensor<B, 2>,
    /// The facts and where they live.
    pub facts: Vec<PlantedFact>,
    spec: PlantedSpec,
}

impl<B: Backend> PlantedModel<B> {
    /// Builds the model deterministically from `spec`.
    pub fn new(spec: PlantedSpec, device: &B::Device) -> Self {
        let v = Self::vocab_size_of(&spec);
        let (l, d_ff) = (spec.n_layers, spec.d_ff);
        let mut rng = Lcg(spec.seed);
        let mut w_in = vec![vec![0.0f32; v * d_ff]; l];
        let mut b_in = vec![vec![0.0f32; d_ff]; l];
        let mut w_out = vec![vec![0.0f32; d_ff * v]; l];
        // Distractors read everything but the object directions and write everything but the
        // subject directions, so no chain of neurons can amplify itself across layers.
        let first_object = 2 + spec.n_templates + spec.n_facts;
        let is_subject = |t: usize| (2 + spec.n_templates..first_object).contains(&t);
        for layer in 0..l {
            for (k, x) in w_in[layer].iter_mut().enumerate() {
                *x = if k / d_ff >= first_object { 0.0 } else { rng.normal() * 0.3 };
            }
            for x in b_in[layer].iter_mut() {
                *x = rng.normal() * 0.1;
            }
            for (k, x) in w_out[layer].iter_mut().enumerate() {
                *x = if is_subject(k % v) { 0.0 } else { rng.normal() * 0.3 };
            }
        }
        let mut facts = Vec::new();
        let mut slot = 0usize;
        for f in 0..spec.n_facts {
            let subject = (2 + spec.n_templates + f) as u32;
            let object = (2 + spec.n_templates + spec.n_facts + f) as u32;
            let mut neurons = Vec::new();
            for _ in 0..spec.neurons_per_fact {
                let n = NeuronId::new(slot % l, slot / l);
                slot += 1;
                for row in 0..v {
                    w_in[n.layer][row * d_ff + n.index] = 0.0;
                }
                w_in[n.layer][subject as usize * d_ff + n.index] = 4.0;
                b_in[n.layer][n.index] = -0.2;
                for col in 0..v {
                    w_out[n.layer][n.index * v + col] = 0.0;
                }
                w_out[n.layer][n.index * v + object as usize] = 4.0;
                neurons.push(n);
            }
            facts.push(PlantedFact { subject, object, neurons });
        }
        let t2 = |d: Vec<f32>, r: usize, c: usize| Tensor::<B, 2>::from_data(TensorData::new(d, [r, c]), device);
        let eye: Vec<f32> = (0..v * v).map(|k| if k / v == k % v { 1.0 } else { 0.0 }).collect();
        Self {
            w_in: w_in.into_iter().map(|d| t2(d, v, d_ff)).collect(),
            b_in: b_in.into_iter().map(|d| Tensor::from_data(TensorData::new(d, [d_ff]), device)).collect(),
            w_out: w_out.into_iter().map(|d| t2(d, d_ff, v)).collect(),
            embed: t2(eye, v, v),
            facts,
            spec,
        }
    }

    fn vocab_size_of(spec: &PlantedSpec) -> usize {
        2 + spec.n_templates + 2 * spec.n_facts
    }

    /// Template token `k` (`k < n_templates`).
    pub fn template(&self, k: usize) -> u32 {
        (2 + k % self.spec.n_templates) as u32
    }

    /// `n` different prompts for fact `f`: template tokens around the subject, then `[MASK]`.
    /// Returns `(ids, mask position)` pairs.
    pub fn prompts(&self, f: usize, n: usize) -> Vec<(Vec<u32>, usize)> {
        let s = self.facts[f].subject;
        (0..n)
            .map(|k| {
                let mut ids = match k % 3 {
                    0 => vec![self.template(k), s, self.template(k + 1)],
                    1 => vec![s, self.template(k), self.template(k + 2), self.template(k + 3)],
                    _ => vec![self.template(k + 1), self.template(k), s],
                };
                ids.push(MASK);
                let pos = ids.len() - 1;
                (ids, pos)
            })
            .collect()
    }
}

impl<B: Backend> KnowledgeModel<B> for PlantedModel<B> {
    fn dims(&self) -> ModelDims {
        let v = Self::vocab_size_of(&self.spec);
        ModelDims { n_layers: self.spec.n_layers, d_model: v, d_ff: self.spec.d_ff, vocab_size: v, max_positions: 64 }
    }

    fn objective(&self) -> Objective {
        Objective::MaskedLm
    }

    fn embed(&self, input: &ModelInput<B>) -> Tensor<B, 3> {
        let [b, s] = input.dims();
        let v = self.embed.dims()[0];
        self.embed.clone().select(0, input.input_ids.clone().reshape([b * s])).reshape([b, s, v])
    }

    fn attention_half(&self, layer: usize, resid: Tensor<B, 3>, _input: &ModelInput<B>) -> Tensor<B, 3> {
        if layer == 0 {
            resid.clone() + resid.mean_dim(1)
        } else {
            resid
        }
    }

    fn ffn_activation(&self, layer: usize, resid_mid: Tensor<B, 3>) -> Tensor<B, 3> {
        let [b, s, d] = resid_mid.dims();
        let d_ff = self.spec.d_ff;
        let h =
            resid_mid.reshape([b * s, d]).matmul(self.w_in[layer].clone()) + self.b_in[layer].clone().unsqueeze::<2>();
        relu(h).reshape([b, s, d_ff])
    }

    fn ffn_output(&self, layer: usize, resid_mid: Tensor<B, 3>, act: Tensor<B, 3>) -> Tensor<B, 3> {
        let [b, s, d_ff] = act.dims();
        let v = self.w_out[layer].dims()[1];
        resid_mid + act.reshape([b * s, d_ff]).matmul(self.w_out[layer].clone()).reshape([b, s, v])
    }

    fn logits(&self, resid: Tensor<B, 3>) -> Tensor<B, 3> {
        resid
    }

    fn ffn_out_weight(&self, layer: usize) -> Tensor<B, 2> {
        self.w_out[layer].clone()
    }

    fn set_ffn_out_weight(&mut self, layer: usize, weight: Tensor<B, 2>) {
        self.w_out[layer] = weight;
    }

    fn token_embedding(&self, id: u32) -> Tensor<B, 1> {
        let v = self.embed.dims()[0];
        let id = id as usize;
        self.embed.clone().slice([id..id + 1, 0..v]).reshape([v])
    }

    fn device(&self) -> B::Device {
        self.embed.device()
    }

    /// Concurrent, so that the tests on this model exercise the concurrent schedule.
    fn concurrent_passes(&self) -> bool {
        true
    }
}

/// A tiny deterministic generator (no dependency, same numbers on every platform), shared by
/// the planted model and random checkpoints.
#[derive(Debug, Clone)]
pub struct Lcg(pub u64);

impl Lcg {
    /// Uniform in (0, 1).
    pub fn uniform(&mut self) -> f32 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32 + 0.5) / (1u64 << 24) as f32
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f32 {
        let (u1, u2) = (self.uniform(), self.uniform());
        (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
    }
}
