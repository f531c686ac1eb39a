//! # kn-pararel
//!
//! Replicates the PARAREL experiments of Dai et al. (2022) and EleutherAI's
//! `pararel_evaluate.py`: builds the fact sets, finds each fact's knowledge neurons, measures
//! suppression and enhancement on related and unrelated prompts, in resumable shards, and
//! reports the paper's metrics and figures.
#![warn(missing_docs)]

pub mod dataset;
pub mod download;
pub mod edit_study;
pub mod encode;
pub mod erase_study;
pub mod evaluate;
pub mod export;
pub mod fingerprint;
pub mod known;
pub mod report;
pub mod results;
pub mod run;
pub mod shard;
pub mod study;
pub mod study_report;
