//! The `kn-cli` binary end to end: results on real models, and bad input, which must give a
//! one-line error naming the thing at fault and exit code 2 (never a panic).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

fn fixture(name: &str) -> String {
    root().join("data/fixtures").join(name).display().to_string()
}

fn models() -> PathBuf {
    let dir =
        std::env::var_os("KN_TEST_MODELS").map(PathBuf::from).unwrap_or_else(|| root().join(".cache/test-models"));
    assert!(dir.join("antiberty-model").is_dir(), "run scripts/fetch-test-models.sh first");
    dir
}

fn kn(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kn-cli")).args(args).output().expect("run kn-cli")
}

fn ok_json(args: &[&str]) -> serde_json::Value {
    let out = kn(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "kn-cli {args:?} failed: {err}");
    serde_json::from_slice(&out.stdout).expect("JSON on stdout")
}

/// Asserts exit code 2, no panic, and a one-line `error:` naming `needle`.
fn fails(args: &[&str], needle: &str) {
    let out = kn(args);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(2), "kn-cli {args:?} should fail with 2; stderr: {err}");
    assert!(!err.contains("panicked") && !err.contains("RUST_BACKTRACE"), "panic for {args:?}: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.len() == 1 && lines[0].starts_with("error:"), "not a one-line error for {args:?}: {err}");
    assert!(
        err.to_lowercase().contains(&needle.to_lowercase()),
        "error for {args:?} does not mention {needle:?}: {err}"
    );
    assert!(out.stdout.is_empty(), "nothing on stdout on error");
}

const AB_IGNORE: [&str; 6] =
    ["--ignore-prefix", "cls.species.", "--ignore-prefix", "cls.chain.", "--ignore-prefix", "cls.graft."];

#[test]
fn predict_on_antiberty_gives_the_residue_transformers_predicts() {
    let gold: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root().join("data/fixtures/golden/antiberty.json")).unwrap())
            .unwrap();
    let m = models().join("antiberty-model").display().to_string();
    let mut args = vec!["predict", "-m", &m, "--top-k", "3", "--prompt", gold["masked_prompt"].as_str().unwrap()];
    args.extend(AB_IGNORE);
    let v = ok_json(&args);
    let top = &v["predictions"][0];
    assert_eq!(top["token"], gold["top"][0]["token"]);
    let (ours, theirs) = (top["prob"].as_f64().unwrap(), gold["top"][0]["prob"].as_f64().unwrap());
    assert!((ours - theirs).abs() < 1e-4, "{ours} vs {theirs}");
}

#[test]
fn paris_walkthrough_on_the_tiny_bert() {
    let m = fixture("tiny-bert");
    let dir = tempfile::tempdir().unwrap();
    let prompts = dir.path().join("paris.txt");
    let gold: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root().join("data/fixtures/golden/eai-tiny-bert.json")).unwrap())
            .unwrap();
    let lines: Vec<&str> = gold["prompts"].as_array().unwrap().iter().map(|p| p.as_str().unwrap()).collect();
    std::fs::write(&prompts, lines.join("\n")).unwrap();
    let neurons = dir.path().join("neurons.json");
    let v = ok_json(&["neurons", "-m", &m, "--target", "paris", "--prompts", prompts.to_str().unwrap(), "-q"]);
    assert_eq!(v["neurons"], gold["refined_p0.5_adaptive_0.3"], "refined neurons differ from the Python library");
    std::fs::write(&neurons, v.to_string()).unwrap();
    let n = neurons.to_str().unwrap();
    let text = "The capital of france is [MASK]";
    let s = ok_json(&["suppress", "-m", &m, "--prompt", text, "--target", "paris", "--neurons", n]);
    assert!(s["after"]["gt_prob"].as_f64() < s["before"]["gt_prob"].as_f64());
    let e = ok_json(&["enhance", "-m", &m, "--prompt", text, "--target", "paris", "--neurons", n]);
    assert!(e["after"]["gt_prob"].as_f64() > e["before"]["gt_prob"].as_f64());
    for extra in [vec![], vec!["--unk"]] {
        let mut args = vec!["erase", "-m", &m, "--prompt", text, "--target", "paris", "--neurons", n];
        args.extend(extra);
        let r = ok_json(&args);
        assert!(r["before"]["argmax_completion"].is_string());
    }
    let ed =
        ok_json(&["edit", "-m", &m, "--prompt", text, "--target", "paris", "--new-target", "london", "--neurons", n]);
    assert!(ed["new_target"]["prob_after"].as_f64() > ed["new_target"]["prob_before"].as_f64());
    let out = dir.path().join("scores.json");
    let o = kn(&["attribute", "-m", &m, "--prompt", text, "--target", "paris", "--out", out.to_str().unwrap()]);
    assert!(o.status.success());
    let a: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(a["scores"].as_array().unwrap().len(), 3);
    assert_eq!(a["scores"][0].as_array().unwrap().len(), 64);
    assert!(a["base_prob"].as_f64().unwrap() > 0.0);

    // Pictures: the heatmap (refined neurons outlined) and the per-layer chart, in both formats.
    let (heat_png, heat_svg, layers_png) =
        (dir.path().join("heat.png"), dir.path().join("heat.svg"), dir.path().join("layers.png"));
    for heat in [&heat_png, &heat_svg] {
        let h = heat.to_str().unwrap();
        let o = kn(&["attribute", "-m", &m, "--prompt", text, "--target", "paris", "--heatmap", h, "--mark", n, "-q"]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert!(o.stderr.is_empty(), "no progress bar when stderr is not a terminal");
    }
    assert!(std::fs::read(&heat_png).unwrap().starts_with(b"\x89PNG\r\n\x1a\n"));
    let svg = std::fs::read_to_string(&heat_svg).unwrap();
    let top = a["top"][0]["neuron"].as_array().unwrap();
    let label = format!("L{}:{}", top[0], top[1]);
    assert!(svg.contains(&format!(">{label}</text>")), "the best neuron {label} is labelled");
    let outlines = svg.matches("fill=\"none\" stroke=\"#000000\"").count();
    let refined = v["neurons"].as_array().unwrap().len();
    assert!(outlines >= refined, "{outlines} outlines for {refined} refined neurons");
    let l = layers_png.to_str().unwrap();
    ok_json(&["neurons", "-m", &m, "--target", "paris", "--prompts", prompts.to_str().unwrap(), "-q", "--plot", l]);
    assert!(std::fs::read(&layers_png).unwrap().len() > 1000);
}

/// A copy of tiny-bert in a temp folder, with `edit` applied to its files.
fn broken_bert(edit: impl FnOnce(&Path)) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for f in std::fs::read_dir(fixture("tiny-bert")).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, dir.path().join(f.file_name().unwrap())).unwrap();
    }
    edit(dir.path());
    dir
}

/// A small GPT-2 with the real GPT-2 tokenizer (random weights).
fn gpt_with_tokenizer() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let out = kn(&[
        "init-random",
        "--preset",
        "tiny-gpt2",
        "--out",
        dir.path().to_str().unwrap(),
        "--tokenizer",
        models().join("gpt2-bpe").to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    dir
}

#[test]
fn bad_input_gives_one_line_errors() {
    let bert = fixture("tiny-bert");
    let p = "The capital of france is [MASK]";
    let predict =
        |m: &str, prompt: &str| vec!["predict".to_string(), "-m".into(), m.into(), "--prompt".into(), prompt.into()];
    let run = |args: Vec<String>, needle: &str| fails(&args.iter().map(String::as_str).collect::<Vec<_>>(), needle);

    // 1-6: model folders and files.
    run(predict("./no/such/model", p), "no/such/model");
    let d = broken_bert(|d| std::fs::write(d.join("config.json"), "{ not json").unwrap());
    run(predict(d.path().to_str().unwrap(), p), "config.json");
    let d = broken_bert(|d| std::fs::write(d.join("config.json"), r#"{"model_type": "mamba"}"#).unwrap());
    run(predict(d.path().to_str().unwrap(), p), "unsupported architecture 'mamba'");
    let d = broken_bert(|d| std::fs::remove_file(d.join("model.safetensors")).unwrap());
    run(predict(d.path().to_str().unwrap(), p), "no weights");
    let d = broken_bert(|d| {
        let bytes = std::fs::read(d.join("model.safetensors")).unwrap();
        std::fs::write(d.join("model.safetensors"), &bytes[..bytes.len() / 2]).unwrap();
    });
    run(predict(d.path().to_str().unwrap(), p), "model.safetensors");
    let d = broken_bert(|d| {
        std::fs::remove_file(d.join("model.safetensors")).unwrap();
        std::fs::write(d.join("pytorch_model.bin"), b"PK\x03\x04 definitely not a zip").unwrap();
    });
    run(predict(d.path().to_str().unwrap(), p), "pytorch_model.bin");
    // 7: NaN in the weights names the tensor.
    let d = broken_bert(|d| {
        let mut bytes = std::fs::read(d.join("model.safetensors")).unwrap();
        let header = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        bytes[8 + header..8 + header + 4].copy_from_slice(&f32::NAN.to_le_bytes());
        std::fs::write(d.join("model.safetensors"), bytes).unwrap();
    });
    run(predict(d.path().to_str().unwrap(), p), "non-finite");
    // 8: a shape that disagrees with config.json.
    let d = broken_bert(|d| {
        let text = std::fs::read_to_string(d.join("config.json"))
            .unwrap()
            .replace("\"intermediate_size\": 64", "\"intermediate_size\": 65");
        std::fs::write(d.join("config.json"), text).unwrap();
    });
    run(predict(d.path().to_str().unwrap(), p), "intermediate.dense.weight");
    // 9: extra heads are reported, not dropped.
    run(predict(models().join("antiberty-model").to_str().unwrap(), "A [MASK] C"), "cls.species");

    // 10-15: prompts and targets.
    run(predict(&bert, "the capital of france is paris"), "[MASK]");
    run(predict(&bert, "[MASK] is the capital of [MASK]"), "2 [MASK]");
    run(predict(&bert, "   "), "prompt is empty");
    run(predict(&bert, "the capital of wakanda is [MASK]"), "wakanda");
    let long = format!("{} [MASK]", "the ".repeat(80));
    run(predict(&bert, &long), "at most 64");
    let attr = |target: &str, extra: &[&str]| {
        let mut v: Vec<String> = ["attribute", "-m", bert.as_str(), "--prompt", p, "--target", target]
            .iter()
            .map(|s| s.to_string())
            .collect();
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    run(attr("", &[]), "target is empty");
    run(attr("wakanda", &[]), "wakanda");
    let gpt = gpt_with_tokenizer();
    run(predict(gpt.path().to_str().unwrap(), "The capital of France is [MASK]"), "causal");

    // 16-19: settings.
    run(attr("paris", &["--steps", "20", "--batch-size", "7"]), "divisible");
    run(attr("paris", &["--steps", "0"]), "positive");
    run(attr("paris", &["--out", "/no/such/dir/scores.json"]), "/no/such/dir");
    let neurons = |spec: &str| {
        ["suppress", "-m", bert.as_str(), "--prompt", p, "--target", "paris", "--neurons", spec]
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
    };
    // 20-23: neuron lists.
    run(neurons("[[0, 1], [99, 0]]"), "layer");
    run(neurons("[[0, 100000]]"), "out of range");
    run(neurons("[[0, 1], [2]]"), "expected [[layer, index]");
    run(neurons("/no/such/neurons.json"), "neither a file nor inline JSON");
    // Pictures: unknown format, unwritable file, marks outside the model.
    let attr = |extra: &[&str]| {
        let mut v: Vec<String> = ["attribute", "-m", bert.as_str(), "--prompt", p, "--target", "paris"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    run(attr(&["--heatmap", "/tmp/scores.jpg"]), "use .svg or .png");
    run(attr(&["--heatmap", "/no/such/dir/scores.png"]), "/no/such/dir/scores.png");
    run(attr(&["--heatmap", "/tmp/kn-heat.png", "--mark", "[[7, 1]]"]), "outside this model");
    // 24-26: ids and presets.
    run(vec!["predict".into(), "-m".into(), fixture("tiny-gpt2"), "--ids".into(), "1,2,99999".into()], "99999");
    // A folder that does not exist (a fixed /tmp name may be left there by anything else).
    let never = std::env::temp_dir().join(format!("kn-never-{}", std::process::id()));
    let never = never.to_string_lossy().into_owned();
    run(vec!["init-random".into(), "--preset".into(), "gpt-17".into(), "--out".into(), never], "gpt-17");
    run(
        vec![
            "neurons".into(),
            "-m".into(),
            bert.clone(),
            "--target".into(),
            "paris".into(),
            "--prompt".into(),
            p.into(),
            "--adaptive-threshold".into(),
            "1.5".into(),
        ],
        "outside [0, 1]",
    );
    // Numbers: NaN and infinities refused at parse time, negative numbers parsed (then judged).
    run(attr(&["--steps", "NaN"]), "--steps");
    run(attr(&[]).into_iter().take(5).collect(), "--target");
    let neurons_with = |extra: &[&str]| {
        let mut v: Vec<String> = ["neurons", "-m", bert.as_str(), "--target", "paris", "--prompt", p]
            .iter()
            .map(|s| s.to_string())
            .collect();
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    run(neurons_with(&["--adaptive-threshold", "NaN"]), "not a finite number");
    run(neurons_with(&["--p", "inf"]), "not a finite number");
    run(neurons_with(&["--p", "-1"]), "--p -1 is outside [0, 1)");
    let mut enh = neurons("[[0, 1]]");
    enh[0] = "enhance".into();
    enh.extend(["--factor".into(), "-inf".into()]);
    run(enh, "not a finite number");
    // Outputs checked before computing: a folder, a missing folder.
    run(neurons_with(&["--out", "/tmp"]), "it is a folder");
    run(neurons_with(&["--plot", "/no/such/dir/layers.svg"]), "/no/such/dir");
    // init-random: never into a folder that holds something, and nothing left half-written.
    let full = tempfile::tempdir().unwrap();
    std::fs::write(full.path().join("keep.txt"), "mine").unwrap();
    let init = |out: &str, tok: &str| {
        ["init-random", "--preset", "tiny-gpt2", "--out", out, "--tokenizer", tok]
            .iter()
            .map(|s| s.to_string())
            .collect()
    };
    run(init(full.path().to_str().unwrap(), "/tmp"), "already exists");
    assert_eq!(std::fs::read_to_string(full.path().join("keep.txt")).unwrap(), "mine");
    let fresh = full.path().join("new-model");
    let no_tokenizer = tempfile::tempdir().unwrap();
    run(init(fresh.to_str().unwrap(), no_tokenizer.path().to_str().unwrap()), "no tokenizer files");
    assert!(!fresh.exists(), "a failed init-random left {}", fresh.display());
    let leftovers: Vec<_> = std::fs::read_dir(full.path()).unwrap().filter_map(|e| e.ok()).collect();
    assert_eq!(leftovers.len(), 1, "staging folder left behind: {leftovers:?}");
}

#[test]
fn every_command_has_help_with_an_example() {
    for cmd in
        ["predict", "attribute", "neurons", "suppress", "enhance", "erase", "edit", "models", "bench", "init-random"]
    {
        let out = kn(&[cmd, "--help"]);
        assert!(out.status.success(), "{cmd} --help");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("Example: kn-cli"), "{cmd} --help has no example");
    }
    let v = ok_json(&["models"]);
    assert!(v["known_hub_names"].as_array().unwrap().iter().any(|m| m["name"] == "EleutherAI/gpt-neo-125M"));
}
