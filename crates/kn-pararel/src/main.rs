//! `kn-pararel`: the PARAREL replication driver.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Parser, Subcommand};
use kn_core::planted::{PlantedModel, PlantedSpec};
use kn_core::KnowledgeModel;
use kn_models::backend::AutodiffBackend as B;
use kn_models::{load_model, HubOptions, LoadOptions};
use kn_pararel::dataset::{self, Dataset, Which};
use kn_pararel::edit_study::{self, EditConfig};
use kn_pararel::encode::{planted_sentences, Encoder, PlantedEncoder, TextEncoder};
use kn_pararel::erase_study::{self, EraseConfig};
use kn_pararel::evaluate::EvalConfig;
use kn_pararel::evaluate::FactResult;
use kn_pararel::fingerprint::{self, Fingerprint};
use kn_pararel::known::{self, KnownConfig};
use kn_pararel::{download, export, report, results, run, shard::Shard};
use serde_json::json;

/// PARAREL replication: data, sharded resumable runs, merge, report, export.
#[derive(Debug, Parser)]
#[command(name = "kn-pararel", version, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Build a fact set from the raw files (or the planted world's).
    ///
    /// Example: kn-pararel data --input data/pararel --download --dataset eai --out eai.json
    Data(DataArgs),
    /// Keep the facts the model knows (greedy answer = object on at least one prompt), N per relation.
    ///
    /// Example: kn-pararel known -m model.gguf --dataset causal.json --per-relation 20 --out runs/smollm2
    Known(KnownArgs),
    /// Evaluate the facts of this shard, resuming what the output folder holds.
    ///
    /// Example: kn-pararel run --model bert-base-uncased --dataset eai.json --out runs/bert --shard 0/8
    Run(RunArgs),
    /// The paper's updating-facts study on a finished run: edit each sampled fact's neurons to a new object.
    ///
    /// Example: kn-pararel edit -m model.gguf --dataset runs/smollm2/known.json --run runs/smollm2 --per-relation 10
    Edit(EditArgs),
    /// The paper's erasing study on a finished run: zero the 20 most frequent neurons of a relation.
    ///
    /// Example: kn-pararel erase -m model.gguf --dataset runs/smollm2/known.json --run runs/smollm2
    Erase(EraseArgs),
    /// Join the shard files into results.jsonl, checking every fact appears exactly once.
    ///
    /// Example: kn-pararel merge runs/bert --dataset eai.json
    Merge(MergeArgs),
    /// Metrics per relation and overall (JSON, markdown), the paper's Figures 3 and 4 and the layer histogram
    /// (SVG, PNG), with the known-facts counts and the case studies' tables when the folder has them.
    ///
    /// Example: kn-pararel report runs/bert
    Report {
        /// Run folder.
        dir: PathBuf,
    },
    /// Write EleutherAI's *_pararel_neurons_*.json and *_pararel_results_*.json.
    ///
    /// Example: kn-pararel export runs/bert --model-name bert-base-uncased
    Export {
        /// Run folder.
        dir: PathBuf,
        /// Model name in the file names.
        #[arg(long)]
        model_name: String,
    },
}

#[derive(Debug, clap::Args)]
struct DataArgs {
    /// Folder laid out like the ParaRel/T-REx/Dai sources (patterns/, trex/, dai2022/).
    #[arg(long, default_value = "data/pararel")]
    input: PathBuf,
    /// Fetch missing raw files from their public sources first.
    #[arg(long)]
    download: bool,
    /// Which fact set.
    #[arg(long, value_enum, default_value = "eai")]
    dataset: Which,
    /// Keep only prompts usable left-to-right (object last), for causal models.
    #[arg(long)]
    causal: bool,
    /// Instead: the planted world's facts (for `run --model planted`).
    #[arg(long, conflicts_with_all = ["download", "causal"])]
    planted: bool,
    /// Keep at most this many facts per relation: a seeded, stratified sample (after `--causal`).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    per_relation: Option<u64>,
    /// Seed of the `--per-relation` sample.
    #[arg(long, default_value_t = 0, requires = "per_relation")]
    seed: u64,
    /// Keep only relations with at least this many patterns (prompts of their richest fact; after `--causal`).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    min_patterns: Option<u64>,
    /// Output JSON ({uuid: {sentences, relation_name, obj_label}}).
    #[arg(long)]
    out: PathBuf,
}

/// The model options every model-loading command shares.
#[derive(Debug, clap::Args)]
struct ModelArgs {
    /// Folder, GGUF file or Hub name, or `planted` (the synthetic model with known knowledge neurons).
    #[arg(long, short = 'm')]
    model: String,
    /// Checkpoint tensors under this prefix may stay unused (repeatable).
    #[arg(long = "ignore-prefix")]
    ignore_prefix: Vec<String>,
    /// Never download models.
    #[arg(long)]
    offline: bool,
}

/// A fact set and the relations of it to use.
#[derive(Debug, clap::Args)]
struct FactSetArgs {
    /// A fact set written by `kn-pararel data`.
    #[arg(long)]
    dataset: PathBuf,
    /// Only these relations (comma-separated).
    #[arg(long, value_delimiter = ',')]
    relations: Vec<String>,
}

#[derive(Debug, clap::Args)]
struct KnownArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    facts: FactSetArgs,
    /// Known facts to keep per relation (default: all; then every fact is checked).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    per_relation: Option<u64>,
    /// Seed of the order in which each relation's facts are checked.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Check at most this many facts per relation.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    max_checked: Option<u64>,
    /// Objects of several tokens: compare a greedy answer of as many tokens instead of skipping.
    #[arg(long)]
    multi_token: bool,
    /// Known when every object token is within the model's top K on some prompt (1: its greedy answer).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    top_k: u64,
    /// Words that may outrank the object without counting (comma-separated; causal models: "the,a,an").
    #[arg(long, value_delimiter = ',')]
    allow_before: Vec<String>,
    /// Output folder: known.jsonl (one verdict per fact checked), known.json (the kept facts), known-summary.json.
    #[arg(long)]
    out: PathBuf,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    facts: FactSetArgs,
    /// At most this many facts (of this shard).
    #[arg(long)]
    limit: Option<usize>,
    /// Output folder.
    #[arg(long)]
    out: PathBuf,
    /// This process's shard, K/N (else SLURM_ARRAY_TASK_ID/COUNT, JOB_COMPLETION_INDEX + KN_SHARDS, RANK/WORLD_SIZE).
    #[arg(long, allow_hyphen_values = true)]
    shard: Option<String>,
    /// The paper's settings (threshold 0.2, adaptive p, left Riemann sum) instead of EleutherAI's.
    #[arg(long)]
    paper: bool,
    /// Objects of several tokens: one [MASK] per piece (masked) / teacher forcing (causal) instead of skipping.
    #[arg(long)]
    multi_token: bool,
    /// Unrelated facts from any other fact (EleutherAI) instead of another relation (paper).
    #[arg(long)]
    unrelated_any: bool,
    /// Integrated-gradients steps.
    #[arg(long, default_value_t = 20)]
    steps: usize,
    /// Batch size.
    #[arg(long, default_value_t = 20)]
    batch_size: usize,
    /// Facts evaluated together (their attributions in one schedule); for GPUs, with
    /// --stack-prompts. Results do not depend on it.
    #[arg(long, default_value_t = 1)]
    facts_per_batch: usize,
    /// Prompts of one length and target positions stacked into one pass, at most this many
    /// (1 = none; scores then within 1e-6 relative of unstacked ones). For GPUs.
    #[arg(long, default_value_t = 1)]
    stack_prompts: usize,
    /// Memory bound of one backward pass in row·block evaluations (~90 KB each at bert-base
    /// width); raise it with --stack-prompts on a GPU.
    #[arg(long, default_value_t = 4096)]
    max_rows_per_pass: usize,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
}

/// What both case studies read: a finished run and its fact set.
#[derive(Debug, clap::Args)]
struct StudyArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// The fact set the run was made from.
    #[arg(long)]
    dataset: PathBuf,
    /// The run folder (its results.jsonl; `merge` first for sharded runs).
    #[arg(long)]
    run: PathBuf,
    /// Output folder (default: the run folder).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Seed of every sampled choice.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Words that may outrank the object without counting, as `known --allow-before` (the,a,an
    /// for a causal model that answers "X was born in" with " the"): a prompt is answered
    /// when the object is the most probable other token, and ranks and accuracy discount them.
    #[arg(long, value_delimiter = ',')]
    allow_before: Vec<String>,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Debug, clap::Args)]
struct EditArgs {
    #[command(flatten)]
    study: StudyArgs,
    /// Facts edited per relation (default: every fact the run evaluated).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    per_relation: Option<u64>,
    /// The edit rule: the paper's (λ1 = 1, λ2 = 8, norm-scaled) or EleutherAI's (λ = 2).
    #[arg(long, value_enum, default_value = "paper")]
    rule: RuleArg,
    /// Neurons refined for more than this share of a relation's facts are not edited.
    #[arg(long, default_value_t = 0.1)]
    common_share: f64,
    /// Facts of the same relation, and of other relations, whose log-perplexity is measured.
    #[arg(long, default_value_t = 5)]
    context: usize,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum RuleArg {
    Paper,
    Eai,
}

#[derive(Debug, clap::Args)]
struct EraseArgs {
    #[command(flatten)]
    study: StudyArgs,
    /// Relations to erase (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "P19,P27,P106,P937")]
    relations: Vec<String>,
    /// Neurons erased per relation (the most frequent refined ones).
    #[arg(long, default_value_t = 20)]
    top: usize,
    /// Facts of other relations measured (sampled; default: all the run evaluated).
    #[arg(long)]
    others: Option<usize>,
    /// Leave out the relations of --relations that the run has no evaluated fact of (listed in the output).
    #[arg(long)]
    skip_absent: bool,
}

#[derive(Debug, clap::Args)]
struct MergeArgs {
    /// Run folder with results.shard-*.jsonl.
    dir: PathBuf,
    /// Check that every fact of this set (after --relations/--limit as run) is present.
    #[arg(long)]
    dataset: Option<PathBuf>,
}

fn main() -> ExitCode {
    // Attribution's temporaries recycled instead of page-faulted afresh (3-5 % of IG).
    kn_models::host_memory::retain_freed_memory();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                e.exit();
            }
            eprintln!("{}", kn_progress::one_line_error(&e.render().to_string()));
            return ExitCode::from(2);
        }
    };
    match dispatch(cli.cmd) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn dispatch(cmd: Cmd) -> Result<()> {
    match cmd {
        Cmd::Data(a) => data(a),
        Cmd::Known(a) => known_cmd(a),
        Cmd::Run(a) => run_cmd(a),
        Cmd::Edit(a) => edit_cmd(a),
        Cmd::Erase(a) => erase_cmd(a),
        Cmd::Merge(a) => merge(a),
        Cmd::Report { dir } => report_cmd(&dir),
        Cmd::Export { dir, model_name } => {
            let r = results::read_results(&dir.join("results.jsonl"))?;
            let (a, b) = export::export(&r, &model_name, 0, &dir)?;
            println!("{}", json!({"neurons": a, "results": b, "facts": r.len()}));
            Ok(())
        }
    }
}

const PLANTED_PROMPTS: usize = 6;

fn planted_model() -> PlantedModel<B> {
    PlantedModel::new(
        PlantedSpec { n_facts: 12, neurons_per_fact: 2, n_templates: 8, n_layers: 4, d_ff: 32, seed: 11 },
        &Default::default(),
    )
}

fn data(a: DataArgs) -> Result<()> {
    let d: Dataset = if a.planted {
        let m = planted_model();
        (0..m.facts.len())
            .map(|f| {
                let fact = dataset::Fact {
                    sentences: planted_sentences(&m, f, PLANTED_PROMPTS),
                    relation_name: format!("R{}", f % 3),
                    obj_label: format!("o{f}"),
                    sub_label: format!("s{f}"),
                };
                (format!("planted-{f:03}"), fact)
            })
            .collect()
    } else {
        if a.download {
            download::download(&a.input)?;
        }
        let d = dataset::build(&a.input, a.dataset).with_context(|| format!("building from {}", a.input.display()))?;
        if a.causal {
            dataset::causal(&d)
        } else {
            d
        }
    };
    let d = match a.min_patterns {
        Some(n) => dataset::min_patterns(&d, usize::try_from(n).unwrap_or(usize::MAX)),
        None => d,
    };
    let d = match a.per_relation {
        Some(n) => dataset::sample_per_relation(&d, usize::try_from(n).unwrap_or(usize::MAX), a.seed),
        None => d,
    };
    let text = serde_json::to_string(&d)?;
    std::fs::write(&a.out, text).with_context(|| format!("writing {}", a.out.display()))?;
    println!("{}", serde_json::to_string(&dataset::counts(&d))?);
    Ok(())
}

fn load_dataset(path: &PathBuf, relations: &[String]) -> Result<Dataset> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut d: Dataset =
        serde_json::from_str(&text).with_context(|| format!("{} is not a fact set", path.display()))?;
    if !relations.is_empty() {
        d.retain(|_, f| relations.contains(&f.relation_name));
        if d.is_empty() {
            bail!("no facts of relations {relations:?} in {}", path.display());
        }
    }
    Ok(d)
}

/// Loads a model (not `planted`) on the backend's default device, with its tokenizer.
fn load(m: &ModelArgs) -> Result<kn_models::ModelBundle<B>> {
    let opts = LoadOptions {
        hub: HubOptions { offline: m.offline, ..Default::default() },
        ignore_prefixes: m.ignore_prefix.clone(),
        tokenizer_dir: None,
    };
    let device =
        kn_models::backend::device("default").or_else(|_| kn_models::backend::device("cpu")).map_err(|e| anyhow!(e))?;
    let bundle = load_model::<B>(&m.model, &opts, &device)?;
    if bundle.tokenizer.is_none() {
        bail!("{} has no tokenizer", m.model);
    }
    Ok(bundle)
}

/// Binds `$m` (`&mut` the model) and `$enc` (its `&dyn Encoder`) for `$body`: the planted world,
/// or a checkpoint loaded by [`load`]. (A macro: the model types differ and the library's
/// functions are generic over them.)
macro_rules! with_model {
    ($args:expr, |$m:ident, $enc:ident| $body:expr) => {{
        let args: &ModelArgs = $args;
        if args.model == "planted" {
            let mut pm = planted_model();
            let e =
                PlantedEncoder { n_templates: pm.dims().vocab_size - 2 - 2 * pm.facts.len(), n_facts: pm.facts.len() };
            #[allow(unused_mut)]
            let ($m, $enc): (&mut PlantedModel<B>, &dyn Encoder) = (&mut pm, &e);
            $body
        } else {
            let mut bundle = load(args)?;
            let tok = bundle.tokenizer.as_ref().ok_or_else(|| anyhow!("{} has no tokenizer", args.model))?;
            let e = TextEncoder { tok, dims: bundle.model.dims(), objective: bundle.model.objective() };
            #[allow(unused_mut)]
            let ($m, $enc): (&mut _, &dyn Encoder) = (&mut bundle.model, &e);
            $body
        }
    }};
}

fn known_cmd(a: KnownArgs) -> Result<()> {
    let data = load_dataset(&a.facts.dataset, &a.facts.relations)?;
    let cfg = KnownConfig {
        per_relation: a.per_relation.map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
        seed: a.seed,
        max_checked: a.max_checked.map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
        skip_multi_token: !a.multi_token,
        rule: known::KnownRule { top_k: usize::try_from(a.top_k).unwrap_or(usize::MAX), allowed: Vec::new() },
    };
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    // A verdict depends on the model, the fact and the multi-token rule only: a later call with
    // another --per-relation, --max-checked, --top-k or --relations reuses the verdicts there.
    let fp = fingerprint_of(&a.model, &a.facts.dataset, &[], json!({"skip_multi_token": cfg.skip_multi_token}))?;
    let has = std::fs::metadata(a.out.join("known.jsonl")).map(|m| m.len() > 0).unwrap_or(false);
    fp.record_or_check(&a.out.join("known.run.json"), has)?;
    let (kept, mut summary) = with_model!(&a.model, |m, enc| {
        let mut cfg = cfg.clone();
        cfg.rule.allowed = kn_pararel::study::allowed_ids(enc, &data, &a.allow_before)?;
        known::filter(&*m, enc, &data, &cfg, &a.out, a.quiet)
    })?;
    summary.allowed_words = a.allow_before.clone();
    write_atomic(&a.out.join("known.json"), &serde_json::to_string(&kept)?)?;
    write_atomic(&a.out.join("known-summary.json"), &serde_json::to_string_pretty(&summary)?)?;
    println!("{}", json!({"kept": summary.overall.kept, "overall": summary.overall, "out": a.out.join("known.json")}));
    Ok(())
}

/// What a command's output folder was made with (checked on resume).
fn fingerprint_of(
    model: &ModelArgs,
    dataset: &std::path::Path,
    relations: &[String],
    settings: serde_json::Value,
) -> Result<Fingerprint> {
    Ok(Fingerprint {
        model: model.model.clone(),
        model_digest: if model.model == "planted" {
            "planted".into()
        } else {
            fingerprint::model_digest(&model.model)?
        },
        dataset: dataset.display().to_string(),
        dataset_digest: fingerprint::file_digest(dataset)?,
        relations: relations.to_vec(),
        settings,
    })
}

/// Writes `text` to `path` through a temporary file and a rename (never a half-written file).
fn write_atomic(path: &std::path::Path, text: &str) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

fn run_cmd(a: RunArgs) -> Result<()> {
    let data = load_dataset(&a.facts.dataset, &a.facts.relations)?;
    let shard = Shard::resolve(a.shard.as_deref(), |k| std::env::var(k).ok())?;
    let mut cfg = if a.paper { EvalConfig::paper() } else { EvalConfig::default() };
    cfg.attribution.steps = a.steps;
    cfg.attribution.batch_size = a.batch_size;
    cfg.attribution.max_stacked_prompts = a.stack_prompts;
    cfg.attribution.max_rows_per_pass = a.max_rows_per_pass;
    cfg.attribution.validate()?;
    if a.facts_per_batch == 0 {
        anyhow::bail!("--facts-per-batch must be positive");
    }
    cfg.skip_multi_token = !a.multi_token;
    cfg.unrelated_any = a.unrelated_any;
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let fingerprint = fingerprint_of(&a.model, &a.facts.dataset, &a.facts.relations, serde_json::to_value(cfg)?)?;
    let results = a.out.join(shard.file_name());
    let has_results = std::fs::metadata(&results).map(|m| m.len() > 0).unwrap_or(false);
    fingerprint
        .record_or_check(&a.out.join(format!("run.shard-{}-of-{}.json", shard.index, shard.count)), has_results)?;
    let pace = run::Pace { limit: a.limit, facts_per_batch: a.facts_per_batch, quiet: a.quiet };
    let summary = with_model!(&a.model, |m, enc| run::run(&*m, enc, &data, &cfg, shard, &a.out, pace))?;
    println!(
        "{}",
        json!({"shard": [shard.index, shard.count], "summary": summary, "out": a.out.join(shard.file_name())})
    );
    Ok(())
}

/// A study's inputs, its output folder, and its fingerprint recorded (or checked on resume).
fn study_setup(a: &StudyArgs, name: &str, settings: serde_json::Value) -> Result<(Dataset, Vec<FactResult>, PathBuf)> {
    let data = load_dataset(&a.dataset, &[])?;
    let results_path = a.run.join("results.jsonl");
    let results = results::read_results(&results_path).context("run `kn-pararel merge` first for sharded runs")?;
    let out = a.out.clone().unwrap_or_else(|| a.run.clone());
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let settings =
        json!({"study": settings, "results_digest": fingerprint::file_digest(&results_path)?, "seed": a.seed});
    let fp = fingerprint_of(&a.model, &a.dataset, &[], settings)?;
    let has = std::fs::metadata(out.join(format!("{name}.jsonl"))).map(|m| m.len() > 0).unwrap_or(false);
    fp.record_or_check(&out.join(format!("{name}.run.json")), has)?;
    Ok((data, results, out))
}

fn edit_cmd(a: EditArgs) -> Result<()> {
    let cfg = EditConfig {
        per_relation: a.per_relation.map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
        seed: a.study.seed,
        rule: match a.rule {
            RuleArg::Paper => kn_core::EditRule::paper(),
            RuleArg::Eai => kn_core::EditRule::eai(),
        },
        common_share: a.common_share,
        context: a.context,
        allow_before: a.study.allow_before.clone(),
    };
    if !(0.0..=1.0).contains(&cfg.common_share) {
        bail!("--common-share must be in [0, 1], not {}", cfg.common_share);
    }
    // A fact's record does not depend on how many facts are sampled: a later call with a larger
    // --per-relation extends the file.
    let mut settings = serde_json::to_value(&cfg)?;
    settings["per_relation"] = serde_json::Value::Null;
    let (data, results, out) = study_setup(&a.study, "edits", settings)?;
    let (done, already) =
        with_model!(&a.study.model, |m, enc| edit_study::run(m, enc, &data, &results, &cfg, &out, a.study.quiet))?;
    println!("{}", json!({"edited": done, "resumed": already, "out": out.join("edits.jsonl")}));
    Ok(())
}

fn erase_cmd(a: EraseArgs) -> Result<()> {
    let cfg = EraseConfig {
        relations: a.relations.clone(),
        top: a.top,
        others: a.others,
        seed: a.study.seed,
        skip_absent: a.skip_absent,
        allow_before: a.study.allow_before.clone(),
    };
    // One record per relation: a later call with more --relations extends the file.
    let mut settings = serde_json::to_value(&cfg)?;
    settings["relations"] = serde_json::Value::Null;
    settings["skip_absent"] = serde_json::Value::Null;
    let (data, results, out) = study_setup(&a.study, "erase", settings)?;
    let s = with_model!(&a.study.model, |m, enc| erase_study::run(m, enc, &data, &results, &cfg, &out, a.study.quiet))?;
    println!(
        "{}",
        json!({"erased": s.erased, "resumed": s.resumed, "absent": s.absent, "out": out.join("erase.jsonl")})
    );
    Ok(())
}

fn merge(a: MergeArgs) -> Result<()> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(&a.dir)
        .with_context(|| format!("reading {}", a.dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("results.shard-") && n.ends_with(".jsonl"))
        })
        .collect();
    files.sort();
    if files.is_empty() {
        bail!("no results.shard-*.jsonl in {}", a.dir.display());
    }
    check_shard_set(&a.dir, &files)?;
    let mut all = Vec::new();
    let mut seen = std::collections::BTreeMap::new();
    for f in &files {
        for r in results::read_results(f)? {
            if let Some(prev) = seen.insert(r.uuid.clone(), f.clone()) {
                bail!("fact {} appears in both {} and {}", r.uuid, prev.display(), f.display());
            }
            all.push(r);
        }
    }
    if let Some(ds) = &a.dataset {
        let d = load_dataset(ds, &[])?;
        let missing: Vec<&String> = d.keys().filter(|k| !seen.contains_key(*k)).collect();
        if !missing.is_empty() {
            bail!(
                "{} facts of {} are missing, e.g. {:?}",
                missing.len(),
                ds.display(),
                &missing[..missing.len().min(5)]
            );
        }
    }
    all.sort_by(|x, y| x.uuid.cmp(&y.uuid));
    let out = a.dir.join("results.jsonl");
    let tmp = a.dir.join("results.jsonl.tmp");
    let text: String = all.iter().map(|r| serde_json::to_string(r).map(|s| s + "\n")).collect::<Result<_, _>>()?;
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, &out)?;
    println!("{}", json!({"merged": files.len(), "facts": all.len(), "out": out}));
    Ok(())
}

/// The shard files of a folder are one complete set: all `K-of-N` for one `N`, each `K` once.
fn check_shard_set(dir: &std::path::Path, files: &[PathBuf]) -> Result<()> {
    let mut shards = Vec::new();
    for f in files {
        let name = f.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let parsed = name
            .strip_prefix("results.shard-")
            .and_then(|r| r.strip_suffix(".jsonl"))
            .and_then(|r| r.split_once("-of-"))
            .and_then(|(k, n)| Some((k.parse::<usize>().ok()?, n.parse::<usize>().ok()?)));
        shards.push(parsed.with_context(|| format!("{name}: not a results.shard-K-of-N.jsonl name"))?);
    }
    let n = shards[0].1;
    if let Some((_, m)) = shards.iter().find(|(_, m)| *m != n) {
        bail!("{} mixes shards of {n} and of {m} processes", dir.display());
    }
    let missing: Vec<usize> = (0..n).filter(|k| !shards.iter().any(|(j, _)| j == k)).collect();
    if !missing.is_empty() {
        bail!("{}: shards {missing:?} of {n} are missing (the run is not complete)", dir.display());
    }
    Ok(())
}

fn report_cmd(dir: &std::path::Path) -> Result<()> {
    let r =
        results::read_results(&dir.join("results.jsonl")).context("run `kn-pararel merge` first for sharded runs")?;
    let mut rep = report::report(&r);
    let known = dir.join("known-summary.json");
    if known.is_file() {
        let text = std::fs::read_to_string(&known).with_context(|| format!("reading {}", known.display()))?;
        rep.known = Some(
            serde_json::from_str(&text).with_context(|| format!("{} is not a known-facts summary", known.display()))?,
        );
    }
    let edits = dir.join("edits.jsonl");
    if edits.is_file() {
        rep.edits = Some(kn_pararel::study_report::edit_table(&results::read_records(&edits)?));
    }
    let erase = dir.join("erase.jsonl");
    if erase.is_file() {
        rep.erase = Some(kn_pararel::study_report::erase_rows(&results::read_records(&erase)?));
    }
    // The studies' --allow-before, from the settings they recorded.
    for name in ["edits", "erase"] {
        let Ok(text) = std::fs::read_to_string(dir.join(format!("{name}.run.json"))) else { continue };
        let v: serde_json::Value = serde_json::from_str(&text).with_context(|| format!("reading {name}.run.json"))?;
        if let Some(words) = v["settings"]["study"]["allow_before"].as_array() {
            rep.studies_allow_before = words.iter().filter_map(|w| w.as_str().map(String::from)).collect();
        }
    }
    std::fs::write(dir.join("report.json"), serde_json::to_string_pretty(&rep)?)?;
    std::fs::write(dir.join("report.md"), report::markdown(&rep))?;
    let fig3 = report::figure(&rep, "Suppressing knowledge neurons", |r| {
        (r.suppress_related.paper_pct, r.suppress_unrelated.paper_pct)
    });
    let fig4 = report::figure(&rep, "Enhancing knowledge neurons", |r| {
        (r.enhance_related.paper_pct, r.enhance_unrelated.paper_pct)
    });
    let layers = report::layer_figure(&rep);
    for (bars, name) in [(fig3, "fig3-suppression"), (fig4, "fig4-enhancement"), (layers, "layers")] {
        let scene = bars.scene()?;
        for ext in ["svg", "png"] {
            kn_plot::save(&scene, &dir.join(format!("{name}.{ext}")))?;
        }
    }
    println!("{}", serde_json::to_string(&json!({"overall": rep.overall, "relations": rep.relations.len()}))?);
    Ok(())
}
