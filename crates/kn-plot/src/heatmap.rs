//! The `[layer × neuron]` attribution map: layers as rows, neurons along x (binned to at most
//! [`MAX_COLUMNS`] pixel columns, each showing its bin's value of largest magnitude), chosen
//! neurons outlined and labelled.

use crate::scene::{text_width, tick_label, ticks, Anchor, Scene};
use crate::{Color, PlotError};

/// Widest plot area in pixels; wider layers are binned.
pub const MAX_COLUMNS: usize = 1536;

/// A neuron to outline, with an optional label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    /// Row (layer).
    pub row: usize,
    /// Column (neuron).
    pub col: usize,
    /// Text written beside it.
    pub label: Option<String>,
}

/// A signed heatmap.
#[derive(Debug, Clone, PartialEq)]
pub struct Heatmap {
    /// Title above the map.
    pub title: String,
    /// One row per layer, all of the same length.
    pub values: Vec<Vec<f32>>,
    /// Cells to outline.
    pub marks: Vec<Mark>,
    /// Label of the rows ("layer").
    pub row_label: String,
    /// Label of the columns ("neuron").
    pub col_label: String,
    /// A line of explanation under the title.
    pub caption: Option<String>,
}

const FONT: f32 = 12.0;
const TITLE: f32 = 16.0;
const ROW_H: f32 = 20.0;

impl Heatmap {
    /// Lays the map out.
    pub fn scene(&self) -> Result<Scene, PlotError> {
        let rows = self.values.len();
        let cols = self.values.first().map_or(0, Vec::len);
        if rows == 0 || cols == 0 {
            return Err(PlotError::Data { what: "heatmap", reason: "no values".into() });
        }
        if let Some(r) = self.values.iter().position(|r| r.len() != cols) {
            return Err(PlotError::Data {
                what: "heatmap",
                reason: format!("row {r} has {} values, row 0 has {cols}", self.values[r].len()),
            });
        }
        if let Some(m) = self.marks.iter().find(|m| m.row >= rows || m.col >= cols) {
            return Err(PlotError::Data {
                what: "heatmap",
                reason: format!("mark ({}, {}) is outside {rows} × {cols}", m.row, m.col),
            });
        }
        let max = self.values.iter().flatten().filter(|v| v.is_finite()).fold(0.0f32, |m, v| m.max(v.abs()));
        // Narrow layers are widened to about 1024 pixels; wide ones binned to MAX_COLUMNS.
        let bin = cols.div_ceil(MAX_COLUMNS);
        let px_cols = cols.div_ceil(bin);
        let scale = (1024 / px_cols).clamp(1, 16) as f32;
        let (left, top) = (60.0, 70.0);
        let plot_w = px_cols as f32 * scale;
        let plot_h = rows as f32 * ROW_H;
        let width = (left + plot_w + 30.0).max(text_width(&self.title, TITLE) + 40.0).max(520.0);
        let height = top + plot_h + 56.0;
        let mut sc = Scene::new(width.ceil() as u32, height.ceil() as u32);
        let x_of = |col: usize| left + (col / bin) as f32 * scale;

        sc.text(width / 2.0, 16.0, &self.title, TITLE, Anchor::Middle);
        if let Some(caption) = &self.caption {
            sc.text(left, 36.0, caption, FONT, Anchor::Start);
        }
        // The colour scale at the right, its "+max" label inside the picture.
        let plus = format!("+{}", tick_label(max as f64));
        self.legend(&mut sc, width - 12.0 - text_width(&plus, FONT) - 204.0, 52.0, max);

        for (r, row) in self.values.iter().enumerate() {
            let y = top + r as f32 * ROW_H;
            for (c, chunk) in row.chunks(bin).enumerate() {
                let v = chunk.iter().copied().fold(0.0f32, |m, v| if v.abs() > m.abs() { v } else { m });
                let t = if max > 0.0 { v / max } else { 0.0 };
                sc.rect(left + c as f32 * scale, y, scale, ROW_H, Color::diverging(t));
            }
            sc.text(left - 6.0, y + ROW_H / 2.0, r.to_string(), FONT, Anchor::End);
        }
        sc.vertical_text(12.0, top + plot_h / 2.0, &self.row_label, FONT, Anchor::Middle);
        sc.outline(left, top, plot_w, plot_h, Color::GREY);
        for t in ticks(cols as f64, 6) {
            if t as usize > cols {
                continue;
            }
            let x = (left + t as f32 / bin as f32 * scale).min(left + plot_w);
            sc.line(x, top + plot_h, x, top + plot_h + 4.0, Color::BLACK);
            sc.text(x, top + plot_h + 12.0, tick_label(t), FONT, Anchor::Middle);
        }
        let binned = if bin > 1 { format!(" ({bin} per pixel column, largest |value| shown)") } else { String::new() };
        sc.text(left + plot_w / 2.0, top + plot_h + 32.0, format!("{}{binned}", self.col_label), FONT, Anchor::Middle);
        for m in &self.marks {
            let x = x_of(m.col) + scale / 2.0;
            let y = top + m.row as f32 * ROW_H;
            sc.outline(x - 2.0 - scale / 2.0, y + 1.0, scale + 4.0, ROW_H - 2.0, Color::BLACK);
            if let Some(label) = &m.label {
                let w = text_width(label, FONT);
                // Inside the plot, on whichever side of the cell has room.
                let room = x + scale / 2.0 + 6.0 + w < left + plot_w;
                let (tx, anchor) =
                    if room { (x + scale / 2.0 + 6.0, Anchor::Start) } else { (x - scale / 2.0 - 6.0, Anchor::End) };
                sc.rect(
                    if anchor == Anchor::Start { tx - 1.0 } else { tx - w - 1.0 },
                    y + 5.0,
                    w + 2.0,
                    ROW_H - 10.0,
                    Color::WHITE,
                );
                sc.text(tx, y + ROW_H / 2.0, label, FONT, anchor);
            }
        }
        Ok(sc)
    }

    /// The colour scale, `-max … 0 … +max`, 200 pixels wide at `(x, y)`.
    fn legend(&self, sc: &mut Scene, x: f32, y: f32, max: f32) {
        for i in 0..200 {
            sc.rect(x + i as f32, y, 1.0, 8.0, Color::diverging(i as f32 / 99.5 - 1.0));
        }
        sc.text(x - 4.0, y + 4.0, format!("-{}", tick_label(max as f64)), FONT, Anchor::End);
        sc.text(x + 204.0, y + 4.0, format!("+{}", tick_label(max as f64)), FONT, Anchor::Start);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use resvg::tiny_skia::Pixmap;

    /// The PNG's colour at SVG point `(x, y)` (the PNG is drawn at `PNG_SCALE`).
    fn colour(png: &Pixmap, x: f32, y: f32) -> Color {
        let s = crate::png::PNG_SCALE;
        let p = png.pixel((x * s) as u32, (y * s) as u32).unwrap();
        Color(p.red(), p.green(), p.blue())
    }

    #[test]
    fn strongest_cell_is_darkest_and_marks_are_outlined() {
        let mut values = vec![vec![0.0f32; 3072]; 2];
        values[1][3000] = 2.0;
        values[1][3001] = -0.5;
        values[0][10] = -1.0;
        let h = Heatmap {
            title: "scores".into(),
            values,
            marks: vec![Mark { row: 1, col: 3000, label: Some("L1 N3000".into()) }],
            row_label: "layer".into(),
            col_label: "neuron".into(),
            caption: None,
        };
        let png = Pixmap::decode_png(&crate::png::render(&h.scene().unwrap()).unwrap()).unwrap();
        // 3072 neurons in 1536 columns: neuron 3000 is column 1500, the pair keeps +2 (largest |v|).
        let (left, top) = (60.0, 70.0);
        assert_eq!(colour(&png, left + 1500.5, top + 20.0 + 10.0), Color::diverging(1.0));
        assert_eq!(colour(&png, left + 5.5, top + 10.0), Color::diverging(-0.5));
        assert_eq!(colour(&png, left + 700.5, top + 10.0), Color::WHITE);
        // Outline left of the cell.
        assert_eq!(colour(&png, left + 1498.0, top + 20.0 + 10.0), Color::BLACK);
    }

    #[test]
    fn the_colour_scale_labels_fit_in_the_picture() {
        let h = Heatmap {
            title: "t".into(),
            values: vec![vec![4.9e-5f32, -1e-6, 0.0]; 3],
            marks: vec![],
            row_label: "layer".into(),
            col_label: "neuron".into(),
            caption: Some("a caption".into()),
        };
        let sc = h.scene().unwrap();
        for shape in &sc.shapes {
            if let crate::Shape::Text { x, text, size, anchor, vertical: false, .. } = shape {
                let w = text_width(text, *size);
                let (l, r) = match anchor {
                    Anchor::Start => (*x, x + w),
                    Anchor::Middle => (x - w / 2.0, x + w / 2.0),
                    Anchor::End => (x - w, *x),
                };
                assert!(l >= 0.0 && r <= sc.width as f32, "{text:?} spans {l}..{r} of {}", sc.width);
            }
        }
    }

    #[test]
    fn bad_shapes_are_errors() {
        let h = |values: Vec<Vec<f32>>, marks| Heatmap {
            title: String::new(),
            values,
            marks,
            row_label: String::new(),
            col_label: String::new(),
            caption: None,
        };
        assert!(h(vec![], vec![]).scene().is_err());
        assert!(h(vec![vec![1.0, 2.0], vec![1.0]], vec![]).scene().is_err());
        let e = h(vec![vec![1.0]], vec![Mark { row: 0, col: 4, label: None }]).scene().unwrap_err().to_string();
        assert!(e.contains("mark (0, 4) is outside 1 × 1"), "{e}");
    }
}
