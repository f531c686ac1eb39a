//! Aggregates results into the paper's and EleutherAI's metrics, per relation and overall, as
//! JSON, a markdown table and the paper's Figures 3 and 4 (bar charts per relation, SVG).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::evaluate::{FactResult, Pair, Stats};

/// One cell: both metrics over a set of prompts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Metric {
    /// The paper's: `100 · mean(Δp) / mean(p)` (ratio of means).
    pub paper_pct: f64,
    /// EleutherAI's: mean over prompts of `100 · Δp / p` (mean of ratios).
    pub eai_pct: f64,
    /// Prompts counted.
    pub n_prompts: usize,
}

#[derive(Default)]
struct Acc {
    before: f64,
    after: f64,
    pct: f64,
    n: usize,
}

impl Acc {
    fn add(&mut self, s: &Stats) {
        for ((b, a), p) in s.prob_before.iter().zip(&s.prob_after).zip(&s.pct_change) {
            if p.is_finite() {
                self.before += f64::from(*b);
                self.after += f64::from(*a);
                self.pct += f64::from(*p);
                self.n += 1;
            }
        }
    }

    fn metric(&self) -> Metric {
        if self.n == 0 {
            return Metric::default();
        }
        Metric {
            paper_pct: 100.0 * (self.after - self.before) / self.before,
            eai_pct: self.pct / self.n as f64,
            n_prompts: self.n,
        }
    }
}

/// Metrics of one group of facts (a relation, or all).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Row {
    /// Facts evaluated.
    pub facts: usize,
    /// Facts skipped (multi-token objects, ...).
    pub skipped: usize,
    /// Mean refined neurons per evaluated fact.
    pub neurons_per_fact: f64,
    /// Suppression of the refined neurons, related prompts.
    pub suppress_related: Metric,
    /// Suppression, unrelated prompts.
    pub suppress_unrelated: Metric,
    /// Enhancement, related.
    pub enhance_related: Metric,
    /// Enhancement, unrelated.
    pub enhance_unrelated: Metric,
    /// Activation baseline, suppression, related.
    pub baseline_suppress_related: Metric,
    /// Activation baseline, enhancement, related.
    pub baseline_enhance_related: Metric,
    /// Refined neurons per layer, summed over the facts (where in depth they sit).
    pub layers: Vec<usize>,
}

#[derive(Default)]
struct RowAcc {
    facts: usize,
    skipped: usize,
    neurons: usize,
    cells: [Acc; 6],
    layers: Vec<usize>,
}

impl RowAcc {
    fn add(&mut self, r: &FactResult) {
        if r.skipped.is_some() {
            self.skipped += 1;
            return;
        }
        self.facts += 1;
        self.neurons += r.neurons.len();
        for n in &r.neurons {
            if self.layers.len() <= n.layer {
                self.layers.resize(n.layer + 1, 0);
            }
            self.layers[n.layer] += 1;
        }
        let pairs: [(&Pair, bool); 4] = [
            (&r.suppression, true),
            (&r.enhancement, true),
            (&r.baseline_suppression, false),
            (&r.baseline_enhancement, false),
        ];
        self.cells[0].add(&pairs[0].0.related);
        self.cells[1].add(&pairs[0].0.unrelated);
        self.cells[2].add(&pairs[1].0.related);
        self.cells[3].add(&pairs[1].0.unrelated);
        self.cells[4].add(&pairs[2].0.related);
        self.cells[5].add(&pairs[3].0.related);
    }

    fn row(&self) -> Row {
        let m = |i: usize| self.cells[i].metric();
        Row {
            facts: self.facts,
            skipped: self.skipped,
            neurons_per_fact: if self.facts == 0 { 0.0 } else { self.neurons as f64 / self.facts as f64 },
            suppress_related: m(0),
            suppress_unrelated: m(1),
            enhance_related: m(2),
            enhance_unrelated: m(3),
            baseline_suppress_related: m(4),
            baseline_enhance_related: m(5),
            layers: self.layers.clone(),
        }
    }
}

/// The whole report.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Report {
    /// Per relation.
    pub relations: BTreeMap<String, Row>,
    /// All facts pooled.
    pub overall: Row,
    /// The known-facts filter's counts, when the run folder has them (`known-summary.json`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub known: Option<crate::known::KnownSummary>,
    /// The updating-facts study, when the run folder has `edits.jsonl`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub edits: Option<crate::study_report::EditTable>,
    /// The erasing study, when the run folder has `erase.jsonl`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub erase: Option<Vec<crate::study_report::EraseRow>>,
    /// Words the case studies did not count above the object (their `--allow-before`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub studies_allow_before: Vec<String>,
}

/// Aggregates records.
pub fn report(results: &[FactResult]) -> Report {
    let mut per: BTreeMap<String, RowAcc> = BTreeMap::new();
    let mut all = RowAcc::default();
    for r in results {
        per.entry(r.relation_name.clone()).or_default().add(r);
        all.add(r);
    }
    Report { relations: per.into_iter().map(|(k, v)| (k, v.row())).collect(), overall: all.row(), ..Default::default() }
}

/// Markdown table.
pub fn markdown(rep: &Report) -> String {
    let mut s = String::from(
        "Δp in % of p: paper metric (ratio of means) / EAI metric (mean of ratios).\n\n\
         | relation | facts | skipped | neurons/fact | suppress related | suppress unrelated | enhance related | enhance unrelated | baseline suppress | baseline enhance |\n\
         |---|---|---|---|---|---|---|---|---|---|\n",
    );
    let cell = |m: &Metric| format!("{:+.2} / {:+.2}", m.paper_pct, m.eai_pct);
    let rows = rep.relations.iter().map(|(k, r)| (k.as_str(), r)).chain(std::iter::once(("**all**", &rep.overall)));
    for (name, r) in rows {
        let _ = writeln!(
            s,
            "| {name} | {} | {} | {:.2} | {} | {} | {} | {} | {} | {} |",
            r.facts,
            r.skipped,
            r.neurons_per_fact,
            cell(&r.suppress_related),
            cell(&r.suppress_unrelated),
            cell(&r.enhance_related),
            cell(&r.enhance_unrelated),
            cell(&r.baseline_suppress_related),
            cell(&r.baseline_enhance_related),
        );
    }
    if let Some(k) = &rep.known {
        s.push_str(&crate::study_report::known_markdown(k));
    }
    if (rep.edits.is_some() || rep.erase.is_some()) && !rep.studies_allow_before.is_empty() {
        let words: Vec<String> = rep.studies_allow_before.iter().map(|w| format!("\"{w}\"")).collect();
        let _ = write!(
            s,
            "\nIn both case studies below, {} above the object are not counted: a prompt is answered when the object \
             is the most probable other token, and ranks, success and accuracy discount them (the paper counts every token).\n",
            words.join(", ")
        );
    }
    if let Some(e) = &rep.edits {
        s.push_str(&crate::study_report::edit_markdown(e));
    }
    if let Some(e) = &rep.erase {
        s.push_str(&crate::study_report::erase_markdown(e));
    }
    s.push_str("\nRefined neurons per layer (all facts): ");
    let hist: Vec<String> = rep.overall.layers.iter().enumerate().map(|(l, c)| format!("{l}: {c}")).collect();
    s.push_str(&hist.join(", "));
    s.push('\n');
    s
}

/// The layer histogram: refined neurons per layer over all facts.
pub fn layer_figure(rep: &Report) -> kn_plot::Bars {
    kn_plot::Bars {
        title: "Where the refined neurons sit".into(),
        categories: (0..rep.overall.layers.len()).map(|l| l.to_string()).collect(),
        series: vec![kn_plot::Series {
            name: "refined neurons".into(),
            values: rep.overall.layers.iter().map(|&c| c as f64).collect(),
        }],
        y_label: "refined neurons (all facts)".into(),
        x_label: "layer".into(),
        unit: String::new(),
    }
}

/// A grouped bar chart per relation (related vs unrelated): the layout of the paper's
/// Figure 3 (suppression) and Figure 4 (enhancement).
pub fn figure(rep: &Report, title: &str, pick: impl Fn(&Row) -> (f64, f64)) -> kn_plot::Bars {
    let all = "all".to_string();
    // Per relation, then the pooled mean over every fact (the paper's last group).
    let rels: Vec<(&String, (f64, f64))> = rep
        .relations
        .iter()
        .filter(|(_, r)| r.facts > 0)
        .map(|(k, r)| (k, pick(r)))
        .chain(std::iter::once((&all, pick(&rep.overall))))
        .collect();
    kn_plot::Bars {
        title: title.to_string(),
        categories: rels.iter().map(|(k, _)| (*k).clone()).collect(),
        series: vec![
            kn_plot::Series { name: "related".into(), values: rels.iter().map(|(_, v)| v.0).collect() },
            kn_plot::Series { name: "unrelated".into(), values: rels.iter().map(|(_, v)| v.1).collect() },
        ],
        y_label: "change in probability (paper metric)".into(),
        x_label: "relation".into(),
        unit: "%".into(),
    }
}
