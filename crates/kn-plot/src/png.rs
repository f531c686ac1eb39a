//! Scene → PNG: the chart's own SVG ([`crate::svg::render`]) rendered by resvg (tiny-skia),
//! its text shaped and anti-aliased in Noto Sans (SIL Open Font License), which is embedded in
//! the binary (crate `ttf-noto-sans`), so a PNG looks the same on every machine. Text widths for
//! the layout ([`text_width`]) are measured by the same engine, so labels fit as drawn.

use std::sync::OnceLock;

use resvg::{tiny_skia, usvg};

use crate::scene::Scene;
use crate::PlotError;

/// The font every chart is laid out in (and the first choice of its SVG).
pub const FONT_FAMILY: &str = "Noto Sans";

/// Pixels per SVG unit in the PNG: twice the SVG's size, sharp on high-density screens and in print.
pub const PNG_SCALE: f32 = 2.0;

/// The parser's options, with the embedded font as the only one (no system fonts: the same
/// picture everywhere), built once.
fn options() -> &'static usvg::Options<'static> {
    static OPTIONS: OnceLock<usvg::Options<'static>> = OnceLock::new();
    OPTIONS.get_or_init(|| {
        let mut o = usvg::Options::default();
        o.fontdb_mut().load_font_data(ttf_noto_sans::REGULAR.to_vec());
        o.font_family = FONT_FAMILY.to_string();
        o
    })
}

/// The PNG of `scene` at [`PNG_SCALE`].
pub fn render(scene: &Scene) -> Result<Vec<u8>, PlotError> {
    let svg = crate::svg::render(scene);
    let tree = usvg::Tree::from_str(&svg, options()).map_err(|e| PlotError::Png(format!("parsing our SVG: {e}")))?;
    let (w, h) = ((scene.width as f32 * PNG_SCALE).ceil() as u32, (scene.height as f32 * PNG_SCALE).ceil() as u32);
    let mut pixmap =
        tiny_skia::Pixmap::new(w, h).ok_or_else(|| PlotError::Png(format!("cannot allocate a {w} × {h} picture")))?;
    resvg::render(&tree, tiny_skia::Transform::from_scale(PNG_SCALE, PNG_SCALE), &mut pixmap.as_mut());
    pixmap.encode_png().map_err(|e| PlotError::Png(e.to_string()))
}

/// The width of `text` at font size `size` in Noto Sans, as resvg draws it (0 for blank text).
pub fn text_width(text: &str, size: f32) -> f32 {
    if text.trim().is_empty() {
        return 0.0;
    }
    let svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"100000\" height=\"{h}\"><text x=\"0\" y=\"{y}\" \
         font-size=\"{size}\" font-family=\"{FONT_FAMILY}\">{}</text></svg>",
        crate::svg::escape(text),
        h = 4.0 * size,
        y = 2.0 * size,
    );
    match usvg::Tree::from_str(&svg, options()) {
        // The advance is at least the ink's extent; the ink box starts at the first glyph's
        // left bearing, so its right edge is the width to leave.
        Ok(tree) => tree.root().abs_bounding_box().right().max(0.0),
        // Our own markup always parses; a rough width rather than a panic if it ever does not.
        Err(_) => 0.6 * size * text.chars().count() as f32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Anchor, Color};

    #[test]
    fn text_is_measured_in_the_embedded_font() {
        let (narrow, wide) = (text_width("iiii", 12.0), text_width("WWWW", 12.0));
        assert!(narrow > 5.0 && wide > 2.5 * narrow, "proportional font: {narrow} vs {wide}");
        let w12 = text_width("+4.9e-5", 12.0);
        assert!((text_width("+4.9e-5", 24.0) / w12 - 2.0).abs() < 0.05, "width scales with size");
        assert_eq!(text_width("  ", 12.0), 0.0);
    }

    #[test]
    fn pngs_have_anti_aliased_text() {
        let mut sc = Scene::new(120, 40);
        sc.rect(0.0, 0.0, 10.0, 10.0, Color(255, 0, 0));
        sc.text(60.0, 20.0, "Paris 0.77", 14.0, Anchor::Middle);
        let png = render(&sc).unwrap();
        let img = tiny_skia::Pixmap::decode_png(&png).unwrap();
        assert_eq!((img.width(), img.height()), (240, 80));
        let px = |x: u32, y: u32| img.pixel(x, y).unwrap();
        assert_eq!((px(5, 5).red(), px(5, 5).green()), (255, 0));
        // Text: dark pixels and grey edge pixels (anti-aliasing) in the text's box.
        let grays: Vec<u8> =
            (60..180).flat_map(|x| (25..55).map(move |y| (x, y))).map(|(x, y)| px(x, y).green()).collect();
        assert!(grays.iter().any(|&g| g < 60), "no dark text pixel");
        assert!(grays.iter().filter(|&&g| g > 60 && g < 200).count() > 20, "no anti-aliased edge");
    }
}
