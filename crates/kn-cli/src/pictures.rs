//! The pictures of `attribute --heatmap` and `neurons --plot`, drawn with kn-plot.

use std::path::Path;

use anyhow::{Context, Result};
use kn_core::{Attribution, NeuronId};
use kn_plot::{Bars, Heatmap, Mark, Series};

/// How many of the top neurons get a text label on the heatmap.
const LABELLED: usize = 8;

/// The `[layer × neuron]` map of `attr`, the `LABELLED` best neurons labelled `L<layer>:<index>`,
/// `marked` (refined neurons, say) outlined.
pub fn heatmap(attr: &Attribution, title: &str, marked: &[NeuronId], path: &Path) -> Result<()> {
    let mut marks: Vec<Mark> = attr
        .top_k(LABELLED)
        .into_iter()
        .map(|(n, _)| Mark { row: n.layer, col: n.index, label: Some(format!("L{}:{}", n.layer, n.index)) })
        .collect();
    marks.extend(
        marked
            .iter()
            .filter(|n| !marks.iter().any(|m| m.row == n.layer && m.col == n.index))
            .map(|n| Mark { row: n.layer, col: n.index, label: None })
            .collect::<Vec<_>>(),
    );
    let map = Heatmap {
        title: title.to_string(),
        values: attr.scores.clone(),
        marks,
        row_label: "layer".into(),
        col_label: "FFN neuron".into(),
        caption: Some(format!(
            "integrated-gradients score; the {LABELLED} best neurons labelled, marked neurons outlined"
        )),
    };
    let scene = map.scene().context("drawing the heatmap")?;
    kn_plot::save(&scene, path).context("writing the heatmap")?;
    Ok(())
}

/// Per-layer bar chart: refined neurons, and coarse neurons per prompt on average.
pub fn layer_bars(
    n_layers: usize,
    refined: &[NeuronId],
    coarse: &[Vec<NeuronId>],
    title: &str,
    path: &Path,
) -> Result<()> {
    let count = |ns: &[NeuronId]| {
        let mut c = vec![0.0f64; n_layers];
        for n in ns {
            if let Some(x) = c.get_mut(n.layer) {
                *x += 1.0;
            }
        }
        c
    };
    let mut mean = vec![0.0f64; n_layers];
    for ns in coarse {
        count(ns).iter().zip(mean.iter_mut()).for_each(|(c, m)| *m += c / coarse.len().max(1) as f64);
    }
    let bars = Bars {
        title: title.to_string(),
        categories: (0..n_layers).map(|l| l.to_string()).collect(),
        series: vec![
            Series { name: "refined neurons".into(), values: count(refined) },
            Series { name: "coarse neurons per prompt (mean)".into(), values: mean },
        ],
        y_label: "neurons".into(),
        x_label: "layer".into(),
        unit: String::new(),
    };
    let scene = bars.scene().context("drawing the layer chart")?;
    kn_plot::save(&scene, path).context("writing the layer chart")?;
    Ok(())
}
