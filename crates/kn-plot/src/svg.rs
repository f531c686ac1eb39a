//! Scene → SVG text.

use std::fmt::Write;

use crate::scene::{Anchor, Scene, Shape};

/// The SVG document of `scene` (text stays text: Noto Sans, the font the layout measured, or a
/// sans-serif of similar widths where it is not installed).
pub fn render(scene: &Scene) -> String {
    let (w, h) = (scene.width, scene.height);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" \
         font-family=\"{font}, 'DejaVu Sans', Arial, sans-serif\">\n<rect width=\"{w}\" height=\"{h}\" fill=\"#ffffff\"/>\n",
        font = crate::png::FONT_FAMILY
    );
    for shape in &scene.shapes {
        // Writing to a String cannot fail.
        let _ = match shape {
            Shape::Rect { x, y, w, h, fill, stroke } => writeln!(
                s,
                "<rect x=\"{x:.2}\" y=\"{y:.2}\" width=\"{w:.2}\" height=\"{h:.2}\" fill=\"{}\" stroke=\"{}\"/>",
                fill.map_or("none".to_string(), |c| c.hex()),
                stroke.map_or("none".to_string(), |c| c.hex()),
            ),
            Shape::Line { x1, y1, x2, y2, color } => writeln!(
                s,
                "<line x1=\"{x1:.2}\" y1=\"{y1:.2}\" x2=\"{x2:.2}\" y2=\"{y2:.2}\" stroke=\"{}\"/>",
                color.hex()
            ),
            Shape::Text { x, y, text, size, anchor, vertical, color } => {
                let anchor = match anchor {
                    Anchor::Start => "start",
                    Anchor::Middle => "middle",
                    Anchor::End => "end",
                };
                let rotate =
                    if *vertical { format!(" transform=\"rotate(-90 {x:.2} {y:.2})\"") } else { String::new() };
                writeln!(
                    s,
                    "<text x=\"{x:.2}\" y=\"{y:.2}\" font-size=\"{size:.1}\" text-anchor=\"{anchor}\" \
                     dominant-baseline=\"central\" fill=\"{}\"{rotate}>{}</text>",
                    color.hex(),
                    escape(text)
                )
            }
        };
    }
    s.push_str("</svg>\n");
    s
}

/// XML-escapes text content.
pub(crate) fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Color;

    #[test]
    fn shapes_become_elements_and_text_is_escaped() {
        let mut sc = Scene::new(100, 50);
        sc.rect(1.0, 2.0, 3.0, 4.0, Color(255, 0, 0));
        sc.line(0.0, 0.0, 10.0, 10.0, Color::BLACK);
        sc.vertical_text(5.0, 6.0, "a<b & c", 12.0, Anchor::End);
        let svg = render(&sc);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("<rect x=\"1.00\" y=\"2.00\" width=\"3.00\" height=\"4.00\" fill=\"#ff0000\""));
        assert!(svg.contains("<line x1=\"0.00\""));
        assert!(svg.contains(">a&lt;b &amp; c</text>"));
        assert!(svg.contains("rotate(-90 5.00 6.00)") && svg.contains("text-anchor=\"end\""));
    }
}
