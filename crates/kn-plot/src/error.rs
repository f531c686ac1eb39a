//! Errors of chart output.

use std::path::PathBuf;

/// Why a chart could not be written.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// The file name does not end in `.svg` or `.png`.
    #[error("{path}: cannot tell the picture format from the file name (use .svg or .png)")]
    UnknownFormat {
        /// The file.
        path: PathBuf,
    },
    /// Writing the file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The PNG encoder failed.
    #[error("PNG encoding failed: {0}")]
    Png(String),
    /// The data cannot be drawn (empty, or not finite).
    #[error("cannot draw {what}: {reason}")]
    Data {
        /// What was drawn.
        what: &'static str,
        /// What is wrong.
        reason: String,
    },
}
