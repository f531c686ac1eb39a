//! kn-models' integration tests, in one test binary: each file is a module, so the backend's
//! generic code is compiled and linked once rather than once per file (minutes per binary on
//! the wgpu build).
//!
//! - `golden_tiny`, `real_checkpoints`: logits against Hugging Face transformers.
//! - `eai_reference`: IG scores against EleutherAI's `knowledge-neurons`.
//! - `optimised_vs_plain`: the optimised IG paths against the straightforward computation.
//! - `core_on_models`: hooks, interventions, undo, selection on the three architectures.
//! - `antiberty_knowledge`: knowledge neurons of a real trained model (heavy; the ndarray and
//!   tch runs only, see scripts/test-backends.sh).
//! - `tokenizers`: WordPiece and byte-level BPE against the Python tokenizers' ids.
//! - `corruption`: a thousand damaged checkpoints of every format: errors, never panics.
//! - `damaged`: damaged or inconsistent checkpoints are typed errors.
//! - `gguf_files`: GGUF files as llama.cpp writes them (permuted q/k, quantized types).
//! - `smollm2`: SmolLM2-135M from its GGUF file: logits and tokenizer ids against transformers,
//!   IG against an independent PyTorch IG.
//! - `smollm2_knowledge`: the knowledge neurons of France → Paris in SmolLM2 (heavy; the ndarray
//!   and tch runs only).

mod common;

mod antiberty_knowledge;
mod core_on_models;
mod corruption;
mod damaged;
mod eai_reference;
mod gguf_files;
mod golden_tiny;
mod optimised_vs_plain;
mod real_checkpoints;
mod smollm2;
mod smollm2_knowledge;
mod tokenizers;
