//! Scene → RGB pixels → PNG, with the public-domain 8×8 bitmap font of the `font8x8` crate.

use font8x8::legacy::BASIC_LEGACY;

use crate::scene::{Anchor, Scene, Shape};
use crate::{Color, PlotError};

/// An RGB image, row-major, 3 bytes per pixel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pixels {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// `width * height * 3` bytes.
    pub rgb: Vec<u8>,
}

impl Pixels {
    /// A white image.
    pub fn new(width: u32, height: u32) -> Self {
        Self { width, height, rgb: vec![255; width as usize * height as usize * 3] }
    }

    /// The colour at `(x, y)`, `None` outside.
    pub fn get(&self, x: i64, y: i64) -> Option<Color> {
        let i = self.index(x, y)?;
        Some(Color(self.rgb[i], self.rgb[i + 1], self.rgb[i + 2]))
    }

    /// Sets one pixel; outside the image does nothing.
    pub fn put(&mut self, x: i64, y: i64, c: Color) {
        if let Some(i) = self.index(x, y) {
            self.rgb[i..i + 3].copy_from_slice(&[c.0, c.1, c.2]);
        }
    }

    fn index(&self, x: i64, y: i64) -> Option<usize> {
        (x >= 0 && y >= 0 && x < self.width as i64 && y < self.height as i64)
            .then(|| (y as usize * self.width as usize + x as usize) * 3)
    }

    /// Fills the pixels whose centres lie inside `[x0, x1) × [y0, y1)` (at least one pixel
    /// wide and high, so thin bars stay visible).
    fn fill(&mut self, x0: f32, y0: f32, x1: f32, y1: f32, c: Color) {
        let (xa, xb) = span(x0, x1);
        let (ya, yb) = span(y0, y1);
        for y in ya..yb {
            for x in xa..xb {
                self.put(x, y, c);
            }
        }
    }

    /// PNG file bytes.
    pub fn to_png(&self) -> Result<Vec<u8>, PlotError> {
        let mut out = Vec::new();
        {
            let mut enc = png::Encoder::new(&mut out, self.width, self.height);
            enc.set_color(png::ColorType::Rgb);
            enc.set_depth(png::BitDepth::Eight);
            let mut w = enc.write_header().map_err(|e| PlotError::Png(e.to_string()))?;
            w.write_image_data(&self.rgb).map_err(|e| PlotError::Png(e.to_string()))?;
            w.finish().map_err(|e| PlotError::Png(e.to_string()))?;
        }
        Ok(out)
    }
}

/// Pixel range `[a, b)` covered by the interval `[lo, hi)`, never empty.
fn span(lo: f32, hi: f32) -> (i64, i64) {
    let (lo, hi) = if lo <= hi { (lo, hi) } else { (hi, lo) };
    let a = lo.round() as i64;
    let b = (hi.round() as i64).max(a + 1);
    (a, b)
}

/// Rasterises `scene`.
pub fn render(scene: &Scene) -> Pixels {
    let mut px = Pixels::new(scene.width, scene.height);
    for shape in &scene.shapes {
        match shape {
            Shape::Rect { x, y, w, h, fill, stroke } => {
                if let Some(c) = fill {
                    px.fill(*x, *y, x + w, y + h, *c);
                }
                if let Some(c) = stroke {
                    let (x0, x1) = span(*x, x + w);
                    let (y0, y1) = span(*y, y + h);
                    for xx in x0..x1 {
                        px.put(xx, y0, *c);
                        px.put(xx, y1 - 1, *c);
                    }
                    for yy in y0..y1 {
                        px.put(x0, yy, *c);
                        px.put(x1 - 1, yy, *c);
                    }
                }
            }
            Shape::Line { x1, y1, x2, y2, color } => line(&mut px, *x1, *y1, *x2, *y2, *color),
            Shape::Text { x, y, text, size, anchor, vertical, color } => {
                draw_text(&mut px, *x, *y, text, *size, *anchor, *vertical, *color)
            }
        }
    }
    px
}

/// A one-pixel line (DDA).
fn line(px: &mut Pixels, x1: f32, y1: f32, x2: f32, y2: f32, c: Color) {
    let steps = (x2 - x1).abs().max((y2 - y1).abs()).ceil().max(1.0) as usize;
    for i in 0..=steps {
        let t = i as f32 / steps as f32;
        px.put((x1 + (x2 - x1) * t).floor() as i64, (y1 + (y2 - y1) * t).floor() as i64, c);
    }
}

/// Text in cells of `scale × 8` pixels, `scale = round(size / 8)` (at least 1).
#[allow(clippy::too_many_arguments)]
fn draw_text(px: &mut Pixels, x: f32, y: f32, text: &str, size: f32, anchor: Anchor, vertical: bool, c: Color) {
    let scale = (size / 8.0).round().max(1.0) as i64;
    let cell = 8 * scale;
    let len = text.chars().count() as i64 * cell;
    let start = match anchor {
        Anchor::Start => 0,
        Anchor::Middle => -len / 2,
        Anchor::End => -len,
    };
    let (x, y) = (x.round() as i64, y.round() as i64);
    for (k, ch) in text.chars().enumerate() {
        let glyph = BASIC_LEGACY[if ch.is_ascii() { ch as usize } else { b'?' as usize }];
        for (row, bits) in glyph.iter().enumerate() {
            for col in 0..8i64 {
                if bits >> col & 1 == 0 {
                    continue;
                }
                // Glyph pixel (u along the text, v down the glyph) in the text's own frame.
                let u = start + k as i64 * cell + col * scale;
                let v = row as i64 * scale - cell / 2;
                for dy in 0..scale {
                    for dx in 0..scale {
                        let (gu, gv) = (u + dx, v + dy);
                        if vertical {
                            px.put(x + gv, y - gu, c);
                        } else {
                            px.put(x + gu, y + gv, c);
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rectangles_lines_and_text_land_on_the_right_pixels() {
        let mut sc = Scene::new(40, 30);
        sc.rect(2.0, 3.0, 4.0, 5.0, Color(255, 0, 0));
        sc.line(0.0, 20.0, 39.0, 20.0, Color(0, 0, 255));
        sc.text(20.0, 12.0, "I", 8.0, Anchor::Start);
        let px = render(&sc);
        assert_eq!(px.get(2, 3), Some(Color(255, 0, 0)));
        assert_eq!(px.get(5, 7), Some(Color(255, 0, 0)));
        assert_eq!(px.get(6, 7), Some(Color::WHITE));
        assert_eq!(px.get(1, 3), Some(Color::WHITE));
        assert_eq!(px.get(39, 20), Some(Color(0, 0, 255)));
        let inked =
            (20..28).flat_map(|x| (8..16).map(move |y| (x, y))).filter(|&(x, y)| px.get(x, y) == Some(Color::BLACK));
        assert!(inked.count() > 5, "the glyph 'I' drew too few pixels");
        assert_eq!(px.get(40, 0), None);
    }

    #[test]
    fn thin_bars_stay_visible() {
        let mut sc = Scene::new(10, 10);
        sc.rect(4.2, 0.0, 0.1, 10.0, Color::BLACK);
        assert_eq!(render(&sc).get(4, 5), Some(Color::BLACK));
    }

    #[test]
    fn png_has_signature_and_size() {
        let bytes = render(&Scene::new(7, 3)).to_png().unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(u32::from_be_bytes(bytes[16..20].try_into().unwrap()), 7);
        assert_eq!(u32::from_be_bytes(bytes[20..24].try_into().unwrap()), 3);
    }
}
