//! A chart as a list of shapes in pixel coordinates (origin top left, y down).

use crate::Color;

/// Where a text's position sits relative to the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Anchor {
    /// Position is the left end (of the baseline's middle).
    Start,
    /// Position is the centre.
    Middle,
    /// Position is the right end.
    End,
}

/// One drawing primitive.
#[derive(Debug, Clone, PartialEq)]
pub enum Shape {
    /// Axis-aligned rectangle, filled and optionally outlined.
    Rect {
        /// Left edge.
        x: f32,
        /// Top edge.
        y: f32,
        /// Width.
        w: f32,
        /// Height.
        h: f32,
        /// Fill colour (`None`: outline only).
        fill: Option<Color>,
        /// Outline colour.
        stroke: Option<Color>,
    },
    /// Straight line, one pixel wide in PNG.
    Line {
        /// Start.
        x1: f32,
        /// Start.
        y1: f32,
        /// End.
        x2: f32,
        /// End.
        y2: f32,
        /// Colour.
        color: Color,
    },
    /// One line of text, centred vertically on `y`.
    Text {
        /// Anchor position.
        x: f32,
        /// Vertical centre.
        y: f32,
        /// The text (ASCII is drawn in PNG; other characters become `?`).
        text: String,
        /// Height in pixels (PNG scales the 8-pixel font by whole multiples).
        size: f32,
        /// Horizontal alignment.
        anchor: Anchor,
        /// Read bottom to top (rotated 90° anticlockwise), for crowded axis labels.
        vertical: bool,
        /// Colour.
        color: Color,
    },
}

/// A picture: size, background and shapes in drawing order.
#[derive(Debug, Clone, PartialEq)]
pub struct Scene {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Shapes, later ones on top.
    pub shapes: Vec<Shape>,
}

impl Scene {
    /// An empty white picture.
    pub fn new(width: u32, height: u32) -> Self {
        Self { width, height, shapes: Vec::new() }
    }

    /// Adds a filled rectangle.
    pub fn rect(&mut self, x: f32, y: f32, w: f32, h: f32, fill: Color) {
        self.shapes.push(Shape::Rect { x, y, w, h, fill: Some(fill), stroke: None });
    }

    /// Adds a rectangle outline.
    pub fn outline(&mut self, x: f32, y: f32, w: f32, h: f32, stroke: Color) {
        self.shapes.push(Shape::Rect { x, y, w, h, fill: None, stroke: Some(stroke) });
    }

    /// Adds a line.
    pub fn line(&mut self, x1: f32, y1: f32, x2: f32, y2: f32, color: Color) {
        self.shapes.push(Shape::Line { x1, y1, x2, y2, color });
    }

    /// Adds horizontal text.
    pub fn text(&mut self, x: f32, y: f32, text: impl Into<String>, size: f32, anchor: Anchor) {
        let text = text.into();
        self.shapes.push(Shape::Text { x, y, text, size, anchor, vertical: false, color: Color::BLACK });
    }

    /// Adds text read bottom to top, its anchor measured along the text.
    pub fn vertical_text(&mut self, x: f32, y: f32, text: impl Into<String>, size: f32, anchor: Anchor) {
        let text = text.into();
        self.shapes.push(Shape::Text { x, y, text, size, anchor, vertical: true, color: Color::BLACK });
    }
}

/// Width of `text` at `size` in the charts' font (measured by the PNG renderer, see
/// [`crate::png::text_width`]).
pub fn text_width(text: &str, size: f32) -> f32 {
    crate::png::text_width(text, size)
}

/// "Nice" axis ticks covering `[0, max]`: about `n` steps of 1, 2 or 5 × 10^k.
pub fn ticks(max: f64, n: usize) -> Vec<f64> {
    if !(max.is_finite() && max > 0.0) {
        return vec![0.0];
    }
    let raw = max / n.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0].into_iter().map(|m| m * mag).find(|s| *s >= raw).unwrap_or(10.0 * mag);
    let count = (max / step).ceil() as usize;
    (0..=count).map(|i| i as f64 * step).collect()
}

/// A tick label without needless digits.
pub fn tick_label(v: f64) -> String {
    if v == v.trunc() && v.abs() < 1e9 {
        format!("{}", v as i64)
    } else if v.abs() >= 0.01 {
        let s = format!("{v:.2}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        format!("{v:.1e}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        assert_eq!(ticks(10.0, 5), vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        assert_eq!(ticks(7.3, 4), vec![0.0, 2.0, 4.0, 6.0, 8.0]);
        let t = ticks(0.037, 4);
        assert!(*t.last().unwrap() >= 0.037 && t.len() <= 6, "{t:?}");
        assert_eq!(ticks(0.0, 4), vec![0.0]);
        assert_eq!(tick_label(4.0), "4");
        assert_eq!(tick_label(0.25), "0.25");
        assert_eq!(tick_label(0.5), "0.5");
    }
}
