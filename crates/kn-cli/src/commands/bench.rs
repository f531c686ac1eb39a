//! `kn-cli bench`: attribution speed on a model of real shape (random weights by default).
//!
//! Prints JSON with the CPU model and its measured FMA peak, seconds, prompts per second,
//! achieved GFLOP/s (the forward and backward matrix products the IG tail performs, counted
//! analytically) and their fraction of the peak, peak RSS; with `--load`, the loading time of
//! `--model`; with `--kernels`, the GFLOP/s of the architecture's weight products alone.

use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use kn_core::{attribute_many, AttributionConfig, KnowledgeModel, Objective, Query};
use kn_models::nn::attention::folds_keys_values;
use kn_models::random::{arch_config, preset_config, random_model};
use kn_models::{ArchConfig, Transformer};
use serde_json::json;

use crate::cli::BenchArgs;
use crate::model_args::B;

/// The seed README's seven Paris prompts (masked models), one per line.
const PARIS: &str = include_str!("../../../../data/prompts/paris.txt");

/// Runs the command.
pub fn run(a: BenchArgs) -> Result<()> {
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let model_args = a.model.as_ref().map(|m| crate::model_args::ModelArgs {
        model: m.clone(),
        tokenizer: a.tokenizer.clone(),
        ignore_prefix: Vec::new(),
        offline: false,
        revision: None,
        cache_dir: None,
        device: "default".into(),
    });
    let mut results = Vec::new();
    let (model, tokenizer, arch, name) = match &model_args {
        Some(args) => {
            let mut runs = Vec::new();
            let mut bundle = None;
            let time_load = a.load || a.load_only;
            for _ in 0..if time_load { a.repeat } else { 1 } {
                drop(bundle.take());
                let start = Instant::now();
                bundle = Some(args.load()?);
                runs.push(start.elapsed().as_secs_f64());
            }
            let b = bundle.ok_or_else(|| anyhow!("no model loaded"))?;
            if time_load {
                eprintln!("load: {:.2} s", median(&runs));
                results.push(json!({"case": "load", "seconds": median(&runs), "runs_seconds": runs}));
            }
            (b.model, b.tokenizer, b.config, args.model.clone())
        }
        None => {
            let cfg = preset_config(&a.preset).ok_or_else(|| anyhow!("unknown preset '{}'", a.preset))?;
            let device = kn_models::backend::device("default").map_err(|e| anyhow!(e))?;
            let (m, _) = random_model::<B>(&cfg, a.seed, &device)?;
            let arch = arch_config(&cfg)?;
            let tok = match &a.tokenizer {
                Some(dir) => Some(kn_models::TextTokenizer::from_dir(dir)?),
                None => None,
            };
            (m, tok, arch, format!("{} (random weights)", a.preset))
        }
    };
    let dims = model.dims();
    let cfg = AttributionConfig {
        steps: a.steps,
        batch_size: a.batch_size,
        max_stacked_prompts: a.stack_prompts,
        max_rows_per_pass: a.max_rows_per_pass,
        ..Default::default()
    };
    cfg.validate()?;
    let cases = if a.load_only { Vec::new() } else { cases(&model, tokenizer.as_ref(), &a)? };
    // Measured once the arguments and the model are known to be good (a bad one fails fast),
    // and again after the timings: a shared host (another tenant on the core's other hardware
    // thread) was seen to halve one measurement now and then (103 against 200 GFLOP/s, session
    // 19), which would double every fraction of it. The larger of the two is the peak.
    let before = super::peak::measure(threads, Duration::from_millis(200));
    eprintln!(
        "{}: FMA peak {:.1} GFLOP/s ({}, {} threads)",
        super::peak::cpu_model().unwrap_or_else(|| "unknown CPU".into()),
        before.gflop_per_second,
        before.isa,
        before.threads
    );
    if !cases.is_empty() {
        // Wᵀ for the backward passes is built once per model, before the first timing.
        let start = Instant::now();
        model.prepare_gradients();
        eprintln!("backward weights prepared in {:.2} s", start.elapsed().as_secs_f64());
    }
    for (label, queries) in cases {
        let flops = ig_flops(&arch, model.objective(), &queries, &cfg);
        let mut runs = Vec::new();
        for _ in 0..a.repeat {
            let start = Instant::now();
            let prompts: Vec<&[Query]> = queries.iter().map(Vec::as_slice).collect();
            attribute_many(&model, &prompts, &cfg)?;
            let secs = start.elapsed().as_secs_f64();
            eprintln!("{label}: {secs:.2} s");
            runs.push(secs);
        }
        let secs = median(&runs);
        results.push(json!({
            "case": label,
            "prompts": queries.len(),
            "seconds": secs,
            "runs_seconds": runs,
            "prompts_per_second": queries.len() as f64 / secs,
            "gflop": flops / 1e9,
            "gflop_per_second": flops / 1e9 / secs,
        }));
    }
    // The kernel table multiplies matrices of its own: the model (and what attribution packed
    // for it) is let go first, so that the peak RSS is the larger of the two, never their sum.
    drop(model);
    let mut kernels = if a.kernels { kernel_table(&arch) } else { Vec::new() };
    let after = super::peak::measure(threads, Duration::from_millis(200));
    eprintln!("FMA peak measured again: {:.1} GFLOP/s", after.gflop_per_second);
    let runs = [before.gflop_per_second, after.gflop_per_second];
    let peak = if after.gflop_per_second > before.gflop_per_second { after } else { before };
    for r in results.iter_mut().chain(kernels.iter_mut()) {
        if let Some(rate) = r.get("gflop_per_second").and_then(serde_json::Value::as_f64) {
            r["percent_of_fma_peak"] = json!(100.0 * rate / peak.gflop_per_second);
        }
    }
    println!(
        "{}",
        json!({
            "model": name,
            "backend": kn_models::backend::NAME,
            "cpu": super::peak::cpu_model(),
            "fma_peak": peak,
            "fma_peak_runs_gflop_per_second": runs,
            "dims": dims,
            "steps": cfg.steps,
            "batch_size": cfg.batch_size,
            "max_stacked_prompts": cfg.max_stacked_prompts,
            "max_rows_per_pass": cfg.max_rows_per_pass,
            "threads": threads,
            "results": results,
            "kernels": kernels,
            "peak_rss_mb": peak_rss_mb(),
        })
    );
    Ok(())
}

/// GFLOP/s of the weight products an IG pass of this architecture performs (batch 20: the
/// forward products at the target rows and on a 9-token prompt, and their backward products
/// by `Wᵀ`) (the caller adds their fraction of the FMA peak); beside each, the same product
/// with the right operand read through a transposed view (what a model storing one layout only
/// would run), and for the head's two products, with the weight packed once as attribution
/// packs it (`prepacked_gflop_per_second`). The ndarray build only.
#[cfg(feature = "ndarray")]
fn kernel_table(c: &ArchConfig) -> Vec<serde_json::Value> {
    let (d, ff, v) = (c.d_model, c.d_ff, c.vocab_size);
    let attn = c.n_heads * c.head_dim;
    let shapes = [
        ("FFN in, 9-token prompt", 180, d, ff),
        ("FFN out, 9-token prompt", 180, ff, d),
        ("attention q projection, 9-token prompt", 180, d, attn),
        ("FFN in, target rows", 20, d, ff),
        ("FFN out, target rows", 20, ff, d),
        ("head, target rows", 20, d, v),
        ("head backward, target rows", 20, v, d),
    ];
    shapes
        .iter()
        .map(|&(label, m, k, n)| {
            let g = kn_models::nn::product_gflops(m, k, n, false, 0.3);
            let t = kn_models::nn::product_gflops(m, k, n, true, 0.3);
            // The head's two products read copies packed once: the forward a transposed view
            // of the embedding table, the backward the table itself.
            let p = match label {
                "head, target rows" => kn_models::nn::prepacked_product_gflops(m, k, n, true, 0.3),
                "head backward, target rows" => kn_models::nn::prepacked_product_gflops(m, k, n, false, 0.3),
                _ => None,
            };
            let packed = p.map(|p| format!("; packed once: {p:.1}")).unwrap_or_default();
            eprintln!(
                "[{m} x {k}] · [{k} x {n}] ({label}): {g:.1} GFLOP/s; right operand a transposed view: {t:.1}{packed}"
            );
            let mut row = json!({"product": label, "m": m, "k": k, "n": n, "gflop_per_second": g, "strided_rhs_gflop_per_second": t});
            if let (Some(p), Some(o)) = (p, row.as_object_mut()) {
                o.insert("prepacked_gflop_per_second".into(), json!(p));
            }
            row
        })
        .collect()
}

/// The other backends multiply through burn: no kernel table.
#[cfg(not(feature = "ndarray"))]
fn kernel_table(_c: &ArchConfig) -> Vec<serde_json::Value> {
    Vec::new()
}

/// The median of run times (the mean of the middle two for an even count).
fn median(runs: &[f64]) -> f64 {
    let mut v = runs.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => f64::NAN,
        _ if !n.is_multiple_of(2) => v[n / 2],
        _ => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Benchmark cases: (label, one query list per prompt).
fn cases(
    model: &Transformer<B>,
    tok: Option<&kn_models::TextTokenizer>,
    a: &crate::cli::BenchArgs,
) -> Result<Vec<(String, Vec<Vec<Query>>)>> {
    let dims = model.dims();
    let synthetic = |len: usize, target_len: usize| -> Result<Vec<Query>> {
        let ids: Vec<u32> = (0..len).map(|i| (1000 + 37 * i as u32) % dims.vocab_size as u32).collect();
        let targets: Vec<u32> = (0..target_len).map(|i| (2000 + 53 * i as u32) % dims.vocab_size as u32).collect();
        let mask = [len / 2];
        let mut ids = ids;
        if model.objective() == Objective::MaskedLm {
            ids[len / 2] = 103 % dims.vocab_size as u32;
        }
        Ok(Query::for_target(
            model.objective(),
            &dims,
            &ids,
            &mask[..usize::from(model.objective() == Objective::MaskedLm)],
            &targets,
        )?)
    };
    Ok(match model.objective() {
        Objective::MaskedLm => {
            let prompts: Vec<Vec<Query>> = match tok {
                Some(t) => PARIS
                    .lines()
                    .map(|p| {
                        Ok(kn_models::prompt::prompt_queries(
                            t,
                            &dims,
                            Objective::MaskedLm,
                            p,
                            "paris",
                            Default::default(),
                            false,
                        )?
                        .queries)
                    })
                    .collect::<Result<_>>()?,
                None => PARIS.lines().map(|p| synthetic(p.split_whitespace().count() + 3, 1)).collect::<Result<_>>()?,
            };
            let one = vec![prompts[1].clone()];
            let mut v = vec![("one prompt".to_string(), one)];
            if !a.single {
                v.push(("seven Paris prompts".to_string(), prompts));
            }
            v
        }
        Objective::CausalLm => {
            let mut v = Vec::new();
            for (len, tlen) in [(5usize, 1usize), (20, 1), (5, 3), (20, 3)] {
                if a.single && (len, tlen) != (5, 1) {
                    continue;
                }
                v.push((format!("{len}-token prompt, {tlen}-token target"), vec![synthetic(len, tlen)?]));
            }
            v
        }
    })
}

/// Floating-point operations of the matrix products the IG tail performs, as `kn_core` runs
/// it: per layer l and quadrature point, layer l's FFN output at the target rows, the full
/// blocks between, the last block at the target rows (its keys and values on every row, or
/// folded into the queries and the context: `kn_models`' `folds_keys_values`),
/// and the head at the target rows (causal models: one row per block against cached keys).
/// Block `l + 1` projects only the target rows to queries, keys and values (the other rows'
/// are the unmodified pass's, projected once per batch of points and not differentiated).
/// Projections follow the architecture: grouped-query keys/values (`n_kv_heads · head_dim`
/// wide) and a gated FFN's third matrix. The backward pass differentiates the activations only
/// (weights are constants), so it costs about as much as the forward: twice the forward count.
/// Layers above 0 skip the points `α = 1`, which layer 0's tail gives them.
fn ig_flops(c: &ArchConfig, objective: Objective, queries: &[Vec<Query>], cfg: &AttributionConfig) -> f64 {
    let (dm, dff, v) = (c.d_model as f64, c.d_ff as f64, c.vocab_size as f64);
    let q_width = (c.n_heads * c.head_dim) as f64;
    let kv_width = (c.n_kv_heads * c.head_dim) as f64;
    let ffn_mats = if c.gated_ffn { 3.0 } else { 2.0 };
    let last = c.n_layers - 1;
    let batches = cfg.steps.div_ceil(cfg.batch_size.max(1)) as f64;
    // Points `α = 1`, which layer 0's tail gives every layer above it (they skip them): the
    // share of the points those layers' tails run.
    let at_one =
        if cfg.reuse_prefix { cfg.quadrature.points(cfg.steps).iter().filter(|p| p.0 == 1.0).count() } else { 0 };
    let above_share = cfg.steps.saturating_sub(at_one) as f64 / cfg.steps.max(1) as f64;
    let mut total = 0.0;
    for prompt in queries {
        for q in prompt {
            let s = q.ids.len() as f64;
            let n = q.positions.len() as f64;
            let causal = objective == Objective::CausalLm && q.positions == [q.ids.len() - 1];
            // One block: queries, keys/values, output projection and FFN on their rows, and
            // `att_rows` queries against `keys` keys (scores and context).
            let rows = |q_rows: f64, kv_rows: f64, out_rows: f64, att_rows: f64, keys: f64| {
                2.0 * (dm * q_width * (q_rows + out_rows)
                    + 2.0 * dm * kv_width * kv_rows
                    + 2.0 * att_rows * keys * q_width
                    + ffn_mats * dm * dff * out_rows)
            };
            // Every projection on `rows`, keys and values on `kv_rows`.
            let block = |r: f64, kv: f64| rows(r, kv, r, r, kv);
            // The last block at the target rows: keys and values of every row, or without
            // rotary positions folded into the queries and the context where that multiplies
            // less (`W_kᵀ` and `W_v` on one row per target row and head, and each head's
            // target row against every row twice, `d_model` wide).
            let last_block = if folds_keys_values(
                c.rope.is_some(),
                c.d_model,
                c.n_heads,
                c.n_kv_heads,
                c.head_dim,
                q.positions.len(),
                q.ids.len(),
            ) {
                2.0 * (2.0 * dm * q_width * n
                    + 2.0 * n * dm * (q_width + c.n_heads as f64 * s)
                    + ffn_mats * dm * dff * n)
            } else {
                block(n, s)
            };
            let (mut fwd, mut once) = (0.0, 0.0);
            for l in 0..c.n_layers {
                // Layer `l`'s tail per point (`fwd` counts all `steps` points of every layer;
                // those above 0 run `steps - at_one`).
                let share = if l == 0 { 1.0 } else { above_share };
                let mut tail = n * 2.0 * dm * dff + n * 2.0 * dm * v;
                if causal && l != last {
                    // The last row only; keys/values of the prefix are cached.
                    tail += (last - l) as f64 * (block(1.0, 1.0) + 4.0 * (s - 1.0) * q_width);
                } else if l + 1 == last {
                    tail += rows(n, n, n, n, s);
                    once += 2.0 * 2.0 * dm * kv_width * s;
                } else if l != last {
                    tail += rows(n, n, s, s, s) + (last - l - 2) as f64 * block(s, s) + last_block;
                    once += 2.0 * (dm * q_width + 2.0 * dm * kv_width) * s;
                }
                fwd += share * tail;
            }
            total += 2.0 * cfg.steps as f64 * fwd + batches * once;
        }
    }
    total
}

/// Peak resident set size in MB (Linux), or null.
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(&[7.5]), 7.5);
        assert!(median(&[]).is_nan());
    }
}
