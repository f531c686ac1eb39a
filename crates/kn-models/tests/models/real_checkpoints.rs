//! Real trained checkpoints fetched from PyPI (antiberty 0.1.3: BERT + MLM head, .bin;
//! microformer-mgm 0.5.8: GPT-2, .bin) give the logits transformers computed (`TOL.logits_abs`).

use crate::common::*;
use kn_core::{KnowledgeModel, ModelInput};
use kn_models::{load_dir, LoadError};

const ANTIBERTY_EXTRA: &[&str] = &["cls.species.", "cls.chain.", "cls.graft."];

fn ignore() -> Vec<String> {
    ANTIBERTY_EXTRA.iter().map(|s| s.to_string()).collect()
}

#[test]
fn antiberty_extra_heads_are_reported_not_dropped() {
    let dev = Default::default();
    let err = load_dir::<B>(&test_models().join("antiberty-model"), &[], &dev).unwrap_err();
    match err {
        LoadError::UnexpectedTensors { names } => {
            assert!(names.iter().all(|n| ANTIBERTY_EXTRA.iter().any(|p| n.starts_with(p))), "{names:?}");
            assert!(names.iter().any(|n| n.starts_with("cls.species.")), "{names:?}");
        }
        other => panic!("expected UnexpectedTensors, got {other}"),
    }
}

#[test]
fn antiberty_logits_match_transformers() {
    let gold = golden("antiberty.json");
    let dev = Default::default();
    let (model, cfg) = load_dir::<B>(&test_models().join("antiberty-model"), &ignore(), &dev).expect("load antiberty");
    assert_eq!((cfg.n_layers, cfg.d_model, cfg.d_ff), (8, 512, 2048));
    // Python padded the shorter sequence with [PAD] = 0; from_batch re-pads and sets the mask.
    let seqs: Vec<Vec<u32>> = id_rows(&gold["input_ids"])
        .into_iter()
        .map(|mut r| {
            while r.last() == Some(&0) {
                r.pop();
            }
            r
        })
        .collect();
    assert_ne!(seqs[0].len(), seqs[1].len(), "the golden batch is padded");
    let input = ModelInput::<B>::from_batch(&seqs, 0, &dev);
    let diff = max_abs_diff(&values(model.forward(&input)), &floats(&gold["logits"]));
    within("antiberty: max |logits - transformers|", diff, TOL.logits_abs);
}

#[test]
fn mgm_gpt2_logits_match_transformers() {
    let gold = golden("mgm.json");
    let dev = Default::default();
    let dir = test_models().join("mgm/mgm/resources/general_model");
    let (model, cfg) = load_dir::<B>(&dir, &[], &dev).expect("load mgm");
    assert_eq!(cfg.vocab_size, 9669);
    let ids = id_rows(&gold["input_ids"]);
    let (b, s, v) = (ids.len(), ids[0].len(), cfg.vocab_size);
    let logits = values(model.forward(&ModelInput::<B>::from_batch(&ids, 0, &dev)));
    let mut last = Vec::new();
    let mut head = Vec::new();
    let mut lse = Vec::new();
    for i in 0..b {
        for j in 0..s {
            let row = &logits[(i * s + j) * v..(i * s + j + 1) * v];
            head.extend_from_slice(&row[..64]);
            let m = row.iter().copied().fold(f32::MIN, f32::max);
            lse.push(m + row.iter().map(|x| (x - m).exp()).sum::<f32>().ln());
            if j == s - 1 {
                last.extend_from_slice(row);
            }
        }
    }
    let d = [
        max_abs_diff(&last, &floats(&gold["last_logits"])),
        max_abs_diff(&head, &floats(&gold["head_logits"])),
        max_abs_diff(&lse, &floats(&gold["logsumexp"])),
    ];
    for (what, x) in ["last-position logits", "first 64 logits", "logsumexp"].iter().zip(d) {
        within(&format!("mgm: max |{what} - transformers|"), x, TOL.logits_abs);
    }
}
