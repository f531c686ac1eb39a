//! The fact sets built from the shared raw files have exactly the published sizes.

mod common;

use kn_pararel::dataset::{build, causal, counts, Which};

#[test]
fn eai_set_has_39_relations_27610_facts_224674_prompts() {
    let Some(raw) = common::pararel_data() else { return };
    let d = build(&raw, Which::Eai).unwrap();
    let c = counts(&d);
    assert_eq!((c.relations, c.facts, c.prompts), (39, 27_610, 224_674));
    let f = d.values().find(|f| f.relation_name == "P19").unwrap();
    assert!(f.sentences.iter().all(|s| s.matches("[MASK]").count() == 1 && !s.contains("[X]")));
}

#[test]
fn paper_set_has_34_relations_27738_facts_253448_prompts() {
    let Some(raw) = common::pararel_data() else { return };
    let c = counts(&build(&raw, Which::Dai).unwrap());
    assert_eq!((c.relations, c.facts, c.prompts), (34, 27_738, 253_448));
    for dropped in ["P1001", "P131", "P17", "P276", "P361"] {
        assert!(!c.per_relation.contains_key(dropped));
    }
}

#[test]
fn causal_set_keeps_only_object_final_prompts() {
    let Some(raw) = common::pararel_data() else { return };
    let d = build(&raw, Which::Eai).unwrap();
    let c = causal(&d);
    let (full, left) = (counts(&d), counts(&c));
    eprintln!(
        "causal PARAREL: {} of {} facts, {} of {} prompts remain",
        left.facts, full.facts, left.prompts, full.prompts
    );
    for (rel, (f, p)) in &left.per_relation {
        eprintln!("  {rel}: {f} facts, {p} prompts");
    }
    assert!(left.prompts < full.prompts && left.prompts > 0);
    assert!(c.values().flat_map(|f| &f.sentences).all(|s| !s.contains("[MASK]")));
}
