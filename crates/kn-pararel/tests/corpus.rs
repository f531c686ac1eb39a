//! The bad-input corpus of `kn-pararel`: wrong fact sets, patterns, shards, scheduler
//! environments, run folders and settings. Every case exits 2 with one `error:` line naming the
//! culprit and never panics.

use std::path::Path;
use std::process::Command;

struct Case {
    args: Vec<String>,
    env: Vec<(&'static str, &'static str)>,
    needles: Vec<&'static str>,
}

fn case(args: &[&str], needles: &[&'static str]) -> Case {
    Case { args: args.iter().map(|s| s.to_string()).collect(), env: Vec::new(), needles: needles.to_vec() }
}

fn failures(cases: &[Case]) -> Vec<String> {
    let mut out = Vec::new();
    for c in cases {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_kn-pararel"));
        cmd.args(&c.args);
        for var in
            ["SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT", "JOB_COMPLETION_INDEX", "KN_SHARDS", "RANK", "WORLD_SIZE"]
        {
            cmd.env_remove(var);
        }
        cmd.envs(c.env.iter().copied());
        let o = cmd.output().expect("run kn-pararel");
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        let problem = if err.contains("panicked") {
            Some("panicked".to_string())
        } else if o.status.code() != Some(2) {
            Some(format!("exit {:?}", o.status.code()))
        } else if lines.len() != 1 || !lines[0].starts_with("error:") {
            Some("not one error line".into())
        } else {
            c.needles.iter().find(|n| !err.to_lowercase().contains(&n.to_lowercase())).map(|n| format!("no {n:?}"))
        };
        if let Some(p) = problem {
            out.push(format!("{:?} {:?}: {p}: {}", c.args, c.env, err.trim()));
        }
    }
    out
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    std::fs::write(&p, text).expect("write");
    p.display().to_string()
}

#[test]
fn the_pararel_bad_input_corpus_gives_one_line_typed_errors() {
    let tmp = tempfile::tempdir().expect("tmp");
    let t = tmp.path();
    let planted = t.join("planted.json").display().to_string();
    let ok = Command::new(env!("CARGO_BIN_EXE_kn-pararel")).args(["data", "--planted", "--out", &planted]).output();
    assert!(ok.expect("data").status.success());
    let run = |extra: &[&str], needles: &[&'static str]| {
        let out = t.join("run").display().to_string();
        let mut a = vec!["run", "-m", "planted", "--dataset", planted.as_str(), "--out", &out, "-q"];
        a.extend_from_slice(extra);
        case(&a, needles)
    };
    let mut cases = Vec::new();
    // Fact sets.
    let not_json = write(t, "bad.json", "{ nope");
    let wrong = write(t, "wrong.json", "{\"f\": {\"sentences\": 3}}");
    for (ds, needles) in
        [(&not_json, &["bad.json"][..]), (&wrong, &["wrong.json"]), (&"/no/such.json".to_string(), &["/no/such.json"])]
    {
        cases.push(case(&["run", "-m", "planted", "--dataset", ds, "--out", "/tmp/kn-x"], needles));
    }
    cases.push(run(&["--relations", "P999"], &["P999"]));
    // Raw data: missing folders, bad pattern files.
    cases.push(case(&["data", "--input", "/no/such/pararel", "--out", "/tmp/kn-d.json"], &["/no/such/pararel"]));
    let raw = t.join("raw");
    write(&raw, "patterns/P1001.jsonl", "{\"pattern\": \"[X] was born in\"}\n");
    cases.push(case(&["data", "--input", raw.to_str().expect("utf-8"), "--out", "/tmp/kn-d.json"], &["P1001.jsonl"]));
    let raw2 = t.join("raw2");
    write(&raw2, "patterns/P1001.jsonl", "{\"pattern\": \"[X] was born in [Y] .\"}\nnot json\n");
    cases.push(case(&["data", "--input", raw2.to_str().expect("utf-8"), "--out", "/tmp/kn-d.json"], &["P1001.jsonl"]));
    let raw3 = t.join("raw3");
    write(&raw3, "patterns/P1001.jsonl", "{\"pattern\": \"was born in [Y] .\"}\n");
    cases.push(case(&["data", "--input", raw3.to_str().expect("utf-8"), "--out", "/tmp/kn-d.json"], &["[X]"]));
    cases.push(case(&["data", "--planted", "--causal", "--out", "/tmp/kn-d.json"], &["--causal"]));
    // Shards and scheduler environments.
    for (s, needles) in [
        ("3/3", &["out of range"][..]),
        ("0/0", &["out of range"]),
        ("1", &["K/N"]),
        ("a/b", &["shard"]),
        ("-1/2", &["--shard"]),
    ] {
        cases.push(run(&["--shard", s], needles));
    }
    for (env, needle) in [
        (vec![("SLURM_ARRAY_TASK_ID", "2")], "SLURM_ARRAY_TASK_COUNT"),
        (vec![("RANK", "1")], "WORLD_SIZE"),
        (vec![("JOB_COMPLETION_INDEX", "1")], "KN_SHARDS"),
        (vec![("RANK", "x"), ("WORLD_SIZE", "2")], "RANK"),
        (vec![("SLURM_ARRAY_TASK_ID", "4"), ("SLURM_ARRAY_TASK_COUNT", "4")], "out of range"),
    ] {
        let mut c = run(&[], &[]);
        c.env = env;
        c.needles = vec![needle];
        cases.push(c);
    }
    // Settings.
    cases.push(run(&["--steps", "0"], &["positive"]));
    cases.push(run(&["--steps", "10", "--batch-size", "3"], &["divisible"]));
    cases.push(run(&["--limit", "x"], &["--limit"]));
    // The run folder goes in the test's own temporary folder (a fixed /tmp name was left behind).
    let unloadable = t.join("unloadable").to_str().expect("utf-8").to_owned();
    cases
        .push(case(&["run", "-m", "/no/such/model", "--dataset", &planted, "--out", &unloadable], &["/no/such/model"]));
    // Run folders.
    let results = t.join("res");
    write(&results, "results.shard-0000-of-0002.jsonl", "");
    cases.push(case(&["merge", results.to_str().expect("utf-8")], &["shards [1] of 2 are missing"]));
    let mixed = t.join("mixed");
    write(&mixed, "results.shard-0000-of-0002.jsonl", "");
    write(&mixed, "results.shard-0000-of-0003.jsonl", "");
    cases.push(case(&["merge", mixed.to_str().expect("utf-8")], &["mixes shards"]));
    let torn = t.join("torn");
    write(&torn, "results.jsonl", "{\"uuid\": 3}\n");
    cases.push(case(&["report", torn.to_str().expect("utf-8")], &["results.jsonl:1"]));
    cases.push(case(&["report", "/no/such/run"], &["/no/such/run"]));
    cases.push(case(&["merge", "/no/such/run"], &["/no/such/run"]));
    cases.push(case(&["export", "/no/such/run", "--model-name", "m"], &["/no/such/run"]));
    cases.push(case(&["frobnicate"], &["frobnicate"]));
    let f = failures(&cases);
    eprintln!("kn-pararel bad-input corpus: {} cases, {} failures", cases.len(), f.len());
    assert!(f.is_empty(), "{}", f.join("\n"));
}
