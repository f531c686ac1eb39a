//! Charts for knowledge-neuron results, drawn in Rust: a chart is built as a [`Scene`] of
//! rectangles, lines and text, then written as SVG (vector, text kept as text) or PNG (that SVG
//! rendered by resvg, text in the embedded Noto Sans), chosen by the file extension.
//!
//! - [`heatmap::Heatmap`]: the `[layer × neuron]` attribution map.
//! - [`bars::Bars`]: grouped bar charts (neurons per layer; the PARAREL figures).

pub mod bars;
pub mod color;
pub mod error;
pub mod heatmap;
pub mod png;
pub mod scene;
pub mod svg;

pub use bars::{Bars, Series};
pub use color::Color;
pub use error::PlotError;
pub use heatmap::{Heatmap, Mark};
pub use scene::{Anchor, Scene, Shape};

use std::path::Path;

/// Output format of a chart file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Scalable vector graphics.
    Svg,
    /// Portable network graphics (RGB, 8 bits).
    Png,
}

impl Format {
    /// The format named by `path`'s extension (`.svg` or `.png`, any case).
    pub fn from_path(path: &Path) -> Result<Self, PlotError> {
        match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
            Some("svg") => Ok(Self::Svg),
            Some("png") => Ok(Self::Png),
            _ => Err(PlotError::UnknownFormat { path: path.to_path_buf() }),
        }
    }
}

/// Writes `scene` to `path` as SVG or PNG according to its extension.
pub fn save(scene: &Scene, path: &Path) -> Result<(), PlotError> {
    let bytes = match Format::from_path(path)? {
        Format::Svg => svg::render(scene).into_bytes(),
        Format::Png => png::render(scene)?,
    };
    std::fs::write(path, bytes).map_err(|source| PlotError::Io { path: path.to_path_buf(), source })
}
