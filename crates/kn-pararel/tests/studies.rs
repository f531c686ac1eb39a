//! The known-facts filter and the paper's two case studies (`known`, `edit`, `erase`), end to
//! end on the planted world (whose knowledge neurons are known) and on the tiny BERT fixture
//! (a real tokenizer and checkpoint): what they keep and measure, that `report` rebuilds their
//! tables from the JSON lines, and that each resumes from what a kill leaves behind (complete
//! lines and a torn last one) to exactly the records of an uninterrupted call.

mod common;
use common::{kn, kn_fails};

use std::path::{Path, PathBuf};

fn lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// The planted facts and a finished run on them.
fn planted_run(dir: &Path) -> (PathBuf, PathBuf) {
    let data = dir.join("planted.json");
    kn(&["data", "--planted", "--out", data.to_str().unwrap()]);
    let run = dir.join("run");
    let (d, r) = (data.to_str().unwrap(), run.to_str().unwrap());
    kn(&["run", "-m", "planted", "--dataset", d, "--out", r, "-q", "--steps", "10", "--batch-size", "10"]);
    (data, run)
}

/// Cuts `file` to its first `keep` lines plus a torn line (what a SIGKILL during a write
/// leaves), reruns `args`, and checks the file then holds exactly `full`'s records, once each.
fn resume_after_kill(args: &[String], file: &Path, full: &[serde_json::Value], keep: usize) {
    let text = std::fs::read_to_string(file).unwrap();
    let mut cut: String = text.lines().take(keep).map(|l| format!("{l}\n")).collect();
    cut.push_str("{\"uuid\":\"torn");
    std::fs::write(file, cut).unwrap();
    let out = kn(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let again = lines(file);
    let key = |v: &serde_json::Value| {
        v.get("uuid").or_else(|| v.get("relation_name")).and_then(|k| k.as_str()).unwrap().to_string()
    };
    let mut keys: Vec<String> = again.iter().map(key).collect();
    let n = keys.len();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), n, "a record appears twice after the restart: {out}");
    let mut want: Vec<&serde_json::Value> = full.iter().collect();
    let mut got: Vec<&serde_json::Value> = again.iter().collect();
    want.sort_by_key(|v| key(v));
    got.sort_by_key(|v| key(v));
    assert_eq!(got, want, "the resumed records differ from an uninterrupted call's");
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn planted_known_edit_erase_and_report() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, run) = planted_run(tmp.path());
    let (d, r) = (data.to_str().unwrap(), run.to_str().unwrap());

    // Known facts: at most 2 per relation, each answered correctly on some prompt.
    let kdir = tmp.path().join("known");
    let k =
        kn(&["known", "-m", "planted", "--dataset", d, "--per-relation", "2", "--out", kdir.to_str().unwrap(), "-q"]);
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(kdir.join("known-summary.json")).unwrap()).unwrap();
    let kept: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(kdir.join("known.json")).unwrap()).unwrap();
    let verdicts = lines(&kdir.join("known.jsonl"));
    eprintln!("planted known: {k}");
    for (rel, c) in summary["relations"].as_object().unwrap() {
        let n = |f: &str| c[f].as_u64().unwrap();
        assert_eq!(n("checked"), n("known") + n("dropped_unknown") + n("dropped_skipped"), "{rel}: {c}");
        assert!(n("kept") <= 2 && n("kept") == n("known"), "{rel}: {c}");
        let in_set = kept.as_object().unwrap().values().filter(|f| f["relation_name"] == rel.as_str()).count();
        assert_eq!(in_set as u64, n("kept"));
    }
    assert!(summary["overall"]["kept"].as_u64().unwrap() >= 3, "the planted model knows its facts: {summary}");
    for id in kept.as_object().unwrap().keys() {
        let v = verdicts.iter().find(|v| v["uuid"] == id.as_str()).unwrap();
        let ranks = v["ranks"].as_array().unwrap();
        assert!(ranks.iter().any(|r| r.as_array().unwrap().iter().all(|x| x.as_u64() == Some(0))), "{v}");
    }

    // Updating facts: every undo restores the weights; some edits succeed (the planted
    // relations have 4 facts, so the paper's 10 % filter would drop every neuron: 0.5 here).
    let e = kn(&["edit", "-m", "planted", "--dataset", d, "--run", r, "--common-share", "0.5", "-q"]);
    assert_eq!(e["edited"], 12);
    let edits = lines(&run.join("edits.jsonl"));
    assert!(edits.iter().all(|x| x["restored"] == true));
    let done: Vec<&serde_json::Value> = edits.iter().filter(|x| x["skipped"].is_null()).collect();
    let success = done.iter().filter(|x| x["after"]["new"]["rank"] == 0).count();
    eprintln!("planted edits: {} of 12 edited, {success} made the new object the argmax", done.len());
    assert!(!done.is_empty() && success * 2 >= done.len(), "{done:?}");
    for x in &done {
        assert_ne!(x["new_label"], x["obj_label"]);
        assert!(x["before"]["old"]["rank"] == 0, "only facts answered correctly are edited: {x}");
    }

    // Erasing: the relation's accuracy falls to (nearly) nothing.
    kn(&["erase", "-m", "planted", "--dataset", d, "--run", r, "--relations", "R0,R1", "-q"]);
    let erase = lines(&run.join("erase.jsonl"));
    assert_eq!(erase.len(), 2);
    for x in &erase {
        let (b, a) =
            (x["related"]["before"]["accuracy"].as_f64().unwrap(), x["related"]["after"]["accuracy"].as_f64().unwrap());
        eprintln!("planted erase {}: accuracy {b:.3} -> {a:.3}", x["relation_name"]);
        assert!(x["restored"] == true && a < b && x["neurons"].as_array().unwrap().len() == 20, "{x}");
    }
    assert!(kn_fails(&["erase", "-m", "planted", "--dataset", d, "--run", r, "--relations", "P19", "-q"])
        .contains("no evaluated fact"));
    let skipped =
        kn(&["erase", "-m", "planted", "--dataset", d, "--run", r, "--relations", "P19,R0", "--skip-absent", "-q"]);
    assert_eq!(skipped["absent"], serde_json::json!(["P19"]));
    assert_eq!((skipped["erased"].as_u64(), skipped["resumed"].as_u64()), (Some(0), Some(1)));

    // The report rebuilds every table from the JSON lines.
    std::fs::copy(kdir.join("known-summary.json"), run.join("known-summary.json")).unwrap();
    kn(&["report", r]);
    let md = std::fs::read_to_string(run.join("report.md")).unwrap();
    for section in ["## Known facts", "## Updating facts", "## Erasing relations", "Refined neurons per layer"] {
        assert!(md.contains(section), "report.md lacks {section}:\n{md}");
    }
    let rep: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("report.json")).unwrap()).unwrap();
    assert_eq!(rep["edits"]["overall"]["edited"].as_u64().unwrap() as usize, done.len());
    assert_eq!(rep["erase"].as_array().unwrap().len(), 2);
    let results = lines(&run.join("results.jsonl"));
    let neurons: usize = results.iter().map(|x| x["neurons"].as_array().unwrap().len()).sum();
    let hist: u64 = rep["overall"]["layers"].as_array().unwrap().iter().map(|c| c.as_u64().unwrap()).sum();
    assert_eq!(hist as usize, neurons, "the layer histogram counts every refined neuron once");
    for f in ["layers.svg", "layers.png"] {
        assert!(std::fs::metadata(run.join(f)).unwrap().len() > 500, "{f}");
    }
}

#[test]
fn known_edit_and_erase_resume_after_a_kill() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, run) = planted_run(tmp.path());
    let (d, r) = (data.to_str().unwrap(), run.to_str().unwrap());
    // Each command: `args` then the output folder; its records file; lines kept by the "kill".
    let commands: [(&str, Vec<&str>, &str, usize); 3] = [
        ("known", vec!["known", "-m", "planted", "--dataset", d], "known.jsonl", 5),
        ("edit", vec!["edit", "-m", "planted", "--dataset", d, "--run", r, "--common-share", "0.5"], "edits.jsonl", 4),
        (
            "erase",
            vec!["erase", "-m", "planted", "--dataset", d, "--run", r, "--relations", "R0,R1,R2"],
            "erase.jsonl",
            1,
        ),
    ];
    for (name, args, file, keep) in &commands {
        let with_out = |out: &Path| {
            let mut v = strings(args);
            v.extend(strings(&["--out", out.to_str().unwrap(), "-q"]));
            v
        };
        let (full, cut) = (tmp.path().join(format!("{name}-full")), tmp.path().join(format!("{name}-cut")));
        for dir in [&full, &cut] {
            kn(&with_out(dir).iter().map(String::as_str).collect::<Vec<_>>());
        }
        resume_after_kill(&with_out(&cut), &cut.join(file), &lines(&full.join(file)), *keep);
        if *name == "known" {
            assert_eq!(std::fs::read(cut.join("known.json")).unwrap(), std::fs::read(full.join("known.json")).unwrap());
        }
    }
    // Other settings on a folder with records are refused.
    let cut = tmp.path().join("edit-cut");
    let err = kn_fails(&[
        "edit",
        "-m",
        "planted",
        "--dataset",
        d,
        "--run",
        r,
        "--common-share",
        "0.2",
        "--out",
        cut.to_str().unwrap(),
        "-q",
    ]);
    assert!(err.contains("another run"), "{err}");
}

#[test]
fn tiny_bert_known_filter_and_studies() {
    let tmp = tempfile::tempdir().unwrap();
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/fixtures/tiny-bert");
    let m = model.to_str().unwrap();
    // Two relations of six facts in the fixture's 91-word vocabulary.
    let capitals = [
        ("france", "paris"),
        ("england", "london"),
        ("germany", "berlin"),
        ("italy", "rome"),
        ("spain", "madrid"),
        ("japan", "tokyo"),
    ];
    let languages = ["french", "english", "german", "italian", "spanish", "japanese"];
    let mut facts = serde_json::Map::new();
    for (i, (country, city)) in capitals.iter().enumerate() {
        let f = |s: &str| s.replace("X", country);
        facts.insert(format!("cap-{i}"), serde_json::json!({"sentences": [f("the capital of X is [MASK] ."), f("[MASK] is the capital of X ."), f("X ' s capital is [MASK] .")], "relation_name": "P36", "obj_label": city, "sub_label": country}));
        facts.insert(format!("lang-{i}"), serde_json::json!({"sentences": [f("the official language of X is [MASK] ."), f("in X one speaks [MASK] ."), f("X speaks [MASK] .")], "relation_name": "P37", "obj_label": languages[i], "sub_label": country}));
    }
    facts.insert("multi".into(), serde_json::json!({"sentences": ["paris is in [MASK] ."], "relation_name": "P37", "obj_label": "frances", "sub_label": "paris"}));
    let data = tmp.path().join("tiny.json");
    std::fs::write(&data, serde_json::Value::Object(facts).to_string()).unwrap();
    let d = data.to_str().unwrap();
    let out = tmp.path().join("run");
    let o = out.to_str().unwrap();

    // A random model knows nothing at top-1; at top-100 (past the vocabulary) everything counts.
    let strict = kn(&["known", "-m", m, "--dataset", d, "--out", tmp.path().join("strict").to_str().unwrap(), "-q"]);
    eprintln!("tiny-bert known, greedy rule: {strict}");
    assert_eq!(strict["overall"]["checked"], 13);
    assert_eq!(strict["overall"]["dropped_skipped"], 1, "the two-piece object is skipped and counted");
    let articles = kn(&[
        "known",
        "-m",
        m,
        "--dataset",
        d,
        "--allow-before",
        "the,a",
        "--out",
        tmp.path().join("articles").to_str().unwrap(),
        "-q",
    ]);
    assert!(articles["overall"]["known"].as_u64() >= strict["overall"]["known"].as_u64(), "{articles} vs {strict}");
    assert!(kn_fails(&[
        "known",
        "-m",
        m,
        "--dataset",
        d,
        "--allow-before",
        "parises",
        "--out",
        tmp.path().join("x").to_str().unwrap()
    ])
    .contains("tokens"));
    for v in lines(&tmp.path().join("strict").join("known.jsonl")).iter().filter(|v| v["skipped"].is_null()) {
        let (ranks, top) = (v["ranks"].as_array().unwrap(), v["top"].as_array().unwrap());
        assert_eq!(ranks.len(), 3);
        assert!(top.iter().all(|t| t[0].as_array().unwrap().len() == 8), "{v}");
    }
    let loose = kn(&["known", "-m", m, "--dataset", d, "--top-k", "100", "--per-relation", "5", "--out", o, "-q"]);
    assert_eq!(loose["overall"]["kept"], 10, "{loose}");
    let kept = out.join("known.json");
    kn(&["run", "-m", m, "--dataset", kept.to_str().unwrap(), "--out", o, "-q", "--steps", "4", "--batch-size", "4"]);
    kn(&["edit", "-m", m, "--dataset", kept.to_str().unwrap(), "--run", o, "--common-share", "0.5", "-q"]);
    kn(&["erase", "-m", m, "--dataset", kept.to_str().unwrap(), "--run", o, "--relations", "P36", "-q"]);
    let edits = lines(&out.join("edits.jsonl"));
    assert_eq!(edits.len(), 10);
    assert!(edits.iter().all(|x| x["restored"] == true && x["before"].is_object()));
    let erase = lines(&out.join("erase.jsonl"));
    assert_eq!(erase[0]["related"]["before"]["n_prompts"], 15);
    assert_eq!(erase[0]["restored"], true);
    kn(&["report", o]);
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("| P36 | 6 | ") && md.contains("## Erasing relations"), "{md}");
}
