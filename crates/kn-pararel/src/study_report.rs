//! The case studies' tables (updating facts, erasing relations) and the known-facts filter's
//! counts, recomputed by `report` from their JSON lines.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::edit_study::EditRecord;
use crate::erase_study::EraseRecord;
use crate::known::KnownSummary;

/// The updating-facts metrics of a group of facts (the paper's names in brackets).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct EditRow {
    /// Facts sampled.
    pub sampled: usize,
    /// Edited (the model answered the prompt correctly and a neuron was left to edit).
    pub edited: usize,
    /// Not edited: the model's argmax on the sampled prompt was not the object.
    pub skipped_wrong: usize,
    /// Not edited: no neuron left after the relation filter, or no new object.
    pub skipped_other: usize,
    /// Mean neurons edited.
    pub neurons: f64,
    /// % of edits whose argmax became the new object (`success_updated`).
    pub success_pct: f64,
    /// % with the new object in the top 5 (`success_updated_5`).
    pub success_at_5_pct: f64,
    /// % whose argmax is no longer the old object (`ori_changed`).
    pub ori_changed_pct: f64,
    /// Mean absolute gain of the new object's probability (`tgt_prob_inc`).
    pub prob_gain: f64,
    /// Median ratio of the new object's probability after / before (`tgt_prob_inc_ratio`; the
    /// median: a mean of ratios is dominated by the smallest "before").
    pub prob_ratio_median: f64,
    /// Mean rank of the new object before (0: argmax).
    pub rank_before: f64,
    /// After.
    pub rank_after: f64,
    /// Mean log-perplexity of the gold object on other facts of the same relation, before.
    pub intra_log_ppl_before: f64,
    /// After.
    pub intra_log_ppl_after: f64,
    /// On facts of other relations, before.
    pub inter_log_ppl_before: f64,
    /// After.
    pub inter_log_ppl_after: f64,
    /// Every undo restored the weights bit for bit.
    pub all_restored: bool,
}

/// The updating-facts table.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct EditTable {
    /// Per relation.
    pub relations: BTreeMap<String, EditRow>,
    /// All facts.
    pub overall: EditRow,
}

fn edit_row(recs: &[&EditRecord]) -> EditRow {
    let mut row = EditRow { sampled: recs.len(), all_restored: true, ..Default::default() };
    let (mut ratios, mut sums) = (Vec::new(), [0.0f64; 11]);
    for r in recs {
        row.all_restored &= r.restored;
        let (Some(b), Some(a)) = (r.before, r.after) else {
            if r.before.is_some_and(|b| b.old.rank != 0) {
                row.skipped_wrong += 1;
            } else {
                row.skipped_other += 1;
            }
            continue;
        };
        row.edited += 1;
        let vals = [
            r.neurons.len() as f64,
            f64::from(u8::from(a.new.rank == 0)),
            f64::from(u8::from(a.new.rank < 5)),
            f64::from(u8::from(a.old.rank != 0)),
            f64::from(a.new.prob - b.new.prob),
            b.new.rank as f64,
            a.new.rank as f64,
            b.intra.log_ppl,
            a.intra.log_ppl,
            b.inter.log_ppl,
            a.inter.log_ppl,
        ];
        sums.iter_mut().zip(vals).for_each(|(s, v)| *s += v);
        ratios.push(f64::from(a.new.prob) / f64::from(b.new.prob.max(f32::MIN_POSITIVE)));
    }
    if row.edited > 0 {
        let n = row.edited as f64;
        let m = |i: usize| sums[i] / n;
        row.neurons = m(0);
        row.success_pct = 100.0 * m(1);
        row.success_at_5_pct = 100.0 * m(2);
        row.ori_changed_pct = 100.0 * m(3);
        row.prob_gain = m(4);
        row.rank_before = m(5);
        row.rank_after = m(6);
        row.intra_log_ppl_before = m(7);
        row.intra_log_ppl_after = m(8);
        row.inter_log_ppl_before = m(9);
        row.inter_log_ppl_after = m(10);
        ratios.sort_by(f64::total_cmp);
        row.prob_ratio_median = ratios[ratios.len() / 2];
    }
    row
}

/// The table of `edits.jsonl`'s records.
pub fn edit_table(recs: &[EditRecord]) -> EditTable {
    let mut groups: BTreeMap<String, Vec<&EditRecord>> = BTreeMap::new();
    for r in recs {
        groups.entry(r.relation_name.clone()).or_default().push(r);
    }
    let all: Vec<&EditRecord> = recs.iter().collect();
    EditTable { relations: groups.iter().map(|(k, v)| (k.clone(), edit_row(v))).collect(), overall: edit_row(&all) }
}

/// One erased relation's row.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct EraseRow {
    /// Relation.
    pub relation: String,
    /// Its facts in the run.
    pub facts: usize,
    /// Neurons erased.
    pub neurons: usize,
    /// Accuracy on the relation's prompts, before and after (%).
    pub accuracy: (f64, f64),
    /// Perplexity of the gold object on them, before and after.
    pub ppl: (f64, f64),
    /// Accuracy on other relations' prompts, before and after (%).
    pub other_accuracy: (f64, f64),
    /// Their perplexity, before and after.
    pub other_ppl: (f64, f64),
    /// The paper's erased ratio on the relation, `(acc − new acc) / acc` (%).
    pub erased_pct: f64,
    /// The same on the other relations (%).
    pub other_erased_pct: f64,
    /// The undo restored the weights bit for bit.
    pub restored: bool,
}

/// The rows of `erase.jsonl`'s records.
pub fn erase_rows(recs: &[EraseRecord]) -> Vec<EraseRow> {
    recs.iter()
        .map(|r| EraseRow {
            relation: r.relation_name.clone(),
            facts: r.facts,
            neurons: r.neurons.len(),
            accuracy: (100.0 * r.related.before.accuracy, 100.0 * r.related.after.accuracy),
            ppl: (r.related.before.ppl, r.related.after.ppl),
            other_accuracy: (100.0 * r.other.before.accuracy, 100.0 * r.other.after.accuracy),
            other_ppl: (r.other.before.ppl, r.other.after.ppl),
            erased_pct: 100.0 * r.related.erased_ratio(),
            other_erased_pct: 100.0 * r.other.erased_ratio(),
            restored: r.restored,
        })
        .collect()
}

/// Markdown of the known-facts counts.
pub fn known_markdown(k: &KnownSummary) -> String {
    let allowed = if k.allowed_words.is_empty() {
        String::new()
    } else {
        format!(
            ", not counting {} above it",
            k.allowed_words.iter().map(|w| format!("{w:?}")).collect::<Vec<_>>().join(", ")
        )
    };
    let rule = if k.rule.top_k <= 1 {
        format!("the object is the model's most probable next token{allowed}")
    } else {
        format!("the object is among the model's {} most probable next tokens{allowed}", k.rule.top_k)
    };
    let mut s = format!(
        "\n## Known facts\n\nKnown: on at least one prompt, {rule} (every object token, the ones before it given).\n\n"
    );
    s.push_str(
        "| relation | facts | checked | known | kept | dropped: not known | dropped: multi-token or not encodable |\n\
         |---|---|---|---|---|---|---|\n",
    );
    let rows = k.relations.iter().map(|(r, c)| (r.as_str(), c)).chain(std::iter::once(("**all**", &k.overall)));
    for (name, c) in rows {
        let _ = writeln!(
            s,
            "| {name} | {} | {} | {} | {} | {} | {} |",
            c.facts, c.checked, c.known, c.kept, c.dropped_unknown, c.dropped_skipped
        );
    }
    s
}

/// Markdown of the updating-facts table.
pub fn edit_markdown(t: &EditTable) -> String {
    let mut s = String::from(
        "\n## Updating facts (the paper's section 5.1)\n\n\
         | relation | sampled | edited | not answered | other skips | neurons | success | success@5 | original changed | Δp(new) | p ratio (median) | rank(new) before → after | intra log-PPL before → after | inter log-PPL before → after |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    let rows = t.relations.iter().map(|(r, c)| (r.as_str(), c)).chain(std::iter::once(("**all**", &t.overall)));
    for (name, r) in rows {
        let _ = writeln!(
            s,
            "| {name} | {} | {} | {} | {} | {:.1} | {:.1} % | {:.1} % | {:.1} % | {:+.4} | {:.3e} | {:.0} → {:.0} | {:.2} → {:.2} | {:.2} → {:.2} |",
            r.sampled,
            r.edited,
            r.skipped_wrong,
            r.skipped_other,
            r.neurons,
            r.success_pct,
            r.success_at_5_pct,
            r.ori_changed_pct,
            r.prob_gain,
            r.prob_ratio_median,
            r.rank_before,
            r.rank_after,
            r.intra_log_ppl_before,
            r.intra_log_ppl_after,
            r.inter_log_ppl_before,
            r.inter_log_ppl_after,
        );
    }
    if !t.overall.all_restored {
        s.push_str("\n**An undo did not restore the weights bit for bit.**\n");
    }
    s
}

/// Markdown of the erasing table.
pub fn erase_markdown(rows: &[EraseRow]) -> String {
    let mut s = String::from(
        "\n## Erasing relations (the paper's section 5.2)\n\n\
         | relation | facts | neurons erased | accuracy before → after | PPL before → after | erased | other relations: accuracy | other: PPL | other: erased |\n\
         |---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {:.1} → {:.1} % | {:.2} → {:.2} | {:.1} % | {:.1} → {:.1} % | {:.2} → {:.2} | {:.1} % |",
            r.relation,
            r.facts,
            r.neurons,
            r.accuracy.0,
            r.accuracy.1,
            r.ppl.0,
            r.ppl.1,
            r.erased_pct,
            r.other_accuracy.0,
            r.other_accuracy.1,
            r.other_ppl.0,
            r.other_ppl.1,
            r.other_erased_pct,
        );
    }
    if rows.iter().any(|r| !r.restored) {
        s.push_str("\n**An undo did not restore the weights bit for bit.**\n");
    }
    s
}
