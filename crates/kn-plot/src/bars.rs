//! Grouped bar charts: one group per category, one bar per series, negative values below zero.

use crate::scene::{text_width, tick_label, ticks, Anchor, Scene};
use crate::{Color, PlotError};

/// One set of bars (one colour), a value per category.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Legend entry.
    pub name: String,
    /// Value per category (NaN: no bar).
    pub values: Vec<f64>,
}

/// A grouped bar chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Bars {
    /// Title above the chart.
    pub title: String,
    /// Group labels along the x axis.
    pub categories: Vec<String>,
    /// The series, each with one value per category.
    pub series: Vec<Series>,
    /// Label of the y axis.
    pub y_label: String,
    /// Label of the x axis.
    pub x_label: String,
    /// Appended to the y tick labels (`"%"`, say).
    pub unit: String,
}

const FONT: f32 = 12.0;
const TITLE: f32 = 16.0;
const BAR: f32 = 12.0;
const GAP: f32 = 10.0;
const PLOT_H: f32 = 300.0;

impl Bars {
    /// Lays the chart out.
    pub fn scene(&self) -> Result<Scene, PlotError> {
        let n = self.categories.len();
        if n == 0 || self.series.is_empty() {
            return Err(PlotError::Data { what: "bar chart", reason: "no categories or no series".into() });
        }
        if let Some(s) = self.series.iter().find(|s| s.values.len() != n) {
            return Err(PlotError::Data {
                what: "bar chart",
                reason: format!("series '{}' has {} values for {n} categories", s.name, s.values.len()),
            });
        }
        let values = self.series.iter().flat_map(|s| s.values.iter().copied()).filter(|v| !v.is_nan());
        let (lo, hi) = values.fold((0.0f64, 0.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
        if !lo.is_finite() || !hi.is_finite() {
            return Err(PlotError::Data { what: "bar chart", reason: "a value is infinite".into() });
        }
        let up = if hi > 0.0 { ticks(hi, 4) } else { vec![0.0] };
        let down = if lo < 0.0 { ticks(-lo, 4) } else { vec![0.0] };
        let (top_v, bottom_v) = (*up.last().unwrap_or(&0.0), -*down.last().unwrap_or(&0.0));
        let span = (top_v - bottom_v).max(f64::MIN_POSITIVE);

        let group = self.series.len() as f32 * BAR + GAP;
        let longest = self.categories.iter().map(|c| text_width(c, FONT)).fold(0.0, f32::max);
        let vertical = longest > group - 2.0;
        let label_h = if vertical { longest + 8.0 } else { FONT + 8.0 };
        let tick_w = up
            .iter()
            .chain(&down)
            .map(|t| text_width(&format!("-{}{}", tick_label(*t), self.unit), FONT))
            .fold(0.0, f32::max);
        let left = 30.0 + tick_w;
        let top = 56.0;
        let width = (left + n as f32 * group + 20.0).max(text_width(&self.title, TITLE) + 40.0).max(360.0);
        // Few categories: spread the groups over the width the title needs anyway.
        let group = group.max(((width - left - 20.0) / n as f32).min(4.0 * group));
        let plot_w = n as f32 * group;
        let bars_w = self.series.len() as f32 * BAR;
        let height = top + PLOT_H + label_h + 30.0;
        let mut sc = Scene::new(width.ceil() as u32, height.ceil() as u32);
        let y = |v: f64| top + ((top_v - v) / span) as f32 * PLOT_H;

        sc.text(width / 2.0, 16.0, &self.title, TITLE, Anchor::Middle);
        let mut lx = left;
        for (i, s) in self.series.iter().enumerate() {
            sc.rect(lx, 32.0, 10.0, 10.0, Color::SERIES[i % Color::SERIES.len()]);
            sc.text(lx + 14.0, 37.0, &s.name, FONT, Anchor::Start);
            lx += 14.0 + text_width(&s.name, FONT) + 20.0;
        }
        let mut grid: Vec<f64> = up.clone();
        grid.extend(down.iter().skip(1).map(|t| -t));
        for t in grid {
            sc.line(left, y(t), left + plot_w, y(t), Color::LIGHT);
            let sign = if t < 0.0 { "-" } else { "" };
            sc.text(left - 4.0, y(t), format!("{sign}{}{}", tick_label(t.abs()), self.unit), FONT, Anchor::End);
        }
        sc.vertical_text(8.0, top + PLOT_H / 2.0, &self.y_label, FONT, Anchor::Middle);
        for (c, cat) in self.categories.iter().enumerate() {
            let gx = left + c as f32 * group + (group - bars_w) / 2.0;
            for (i, s) in self.series.iter().enumerate() {
                let v = s.values[c];
                if v.is_nan() {
                    continue;
                }
                let (y0, y1) = (y(v.max(0.0)), y(v.min(0.0)));
                sc.rect(gx + i as f32 * BAR, y0, BAR - 1.0, (y1 - y0).max(0.5), Color::SERIES[i % Color::SERIES.len()]);
            }
            let cx = gx + bars_w / 2.0;
            if vertical {
                sc.vertical_text(cx, top + PLOT_H + 6.0, cat, FONT, Anchor::End);
            } else {
                sc.text(cx, top + PLOT_H + 10.0, cat, FONT, Anchor::Middle);
            }
        }
        sc.line(left, y(0.0), left + plot_w, y(0.0), Color::BLACK);
        sc.line(left, top, left, top + PLOT_H, Color::BLACK);
        sc.text(left + plot_w / 2.0, height - 12.0, &self.x_label, FONT, Anchor::Middle);
        Ok(sc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scene::Shape;

    fn chart(values: Vec<f64>) -> Bars {
        Bars {
            title: "t".into(),
            categories: vec!["P17".into(), "P19".into()],
            series: vec![
                Series { name: "related".into(), values },
                Series { name: "unrelated".into(), values: vec![1.0, 2.0] },
            ],
            y_label: "dp".into(),
            x_label: "relation".into(),
            unit: "%".into(),
        }
    }

    fn bars(sc: &Scene) -> Vec<(f32, f32, Color)> {
        sc.shapes
            .iter()
            .filter_map(|s| match s {
                Shape::Rect { y, h, fill: Some(c), w, .. } if *w > 10.0 && *w < 12.0 => Some((*y, *h, *c)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn bar_heights_are_proportional_and_negative_bars_hang_below_zero() {
        let sc = chart(vec![-4.0, 8.0]).scene().unwrap();
        let b = bars(&sc);
        assert_eq!(b.len(), 4);
        let (neg, pos) = (b[0], b[2]);
        assert!((pos.1 / neg.1 - 2.0).abs() < 1e-3, "{b:?}");
        assert!((neg.0 - (pos.0 + pos.1)).abs() < 1e-3, "the negative bar starts at the zero line");
        assert_eq!(b[1].2, Color::SERIES[1]);
    }

    #[test]
    fn mismatched_series_are_an_error() {
        let err = chart(vec![1.0]).scene().unwrap_err().to_string();
        assert!(err.contains("series 'related' has 1 values for 2 categories"), "{err}");
        assert!(chart(vec![f64::INFINITY, 1.0]).scene().is_err());
    }
}
