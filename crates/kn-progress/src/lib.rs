//! What the tools print on stderr: progress of long work (on a terminal an `indicatif` bar
//! with count, rate and ETA, redrawn in place; when stderr is not a terminal (logs, CI) a plain
//! line every `log_every` units and at the end; with `quiet` nothing), and one-line errors.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// A usage error as the tools print errors: one `error: …` line. `rendered` is the text an
/// argument parser produced (clap's several lines, with its usage and help hint), reduced to
/// the message itself.
pub fn one_line_error(rendered: &str) -> String {
    let parts: Vec<&str> = rendered
        .lines()
        .map(str::trim)
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .filter(|l| !l.is_empty())
        .collect();
    format!("error: {} (see --help)", parts.join(" ").trim_start_matches("error: "))
}

/// How a [`Bar`] shows itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Redrawn in place (stderr is a terminal).
    Terminal,
    /// One line every so many units (stderr is a file or pipe).
    Lines {
        /// Units between two lines.
        every: u64,
    },
    /// Nothing.
    Hidden,
}

impl Mode {
    /// `Terminal` when stderr is a terminal and not `quiet`, else `Hidden`.
    pub fn terminal_only(quiet: bool) -> Self {
        if !quiet && std::io::stderr().is_terminal() {
            Self::Terminal
        } else {
            Self::Hidden
        }
    }

    /// `Hidden` if `quiet`, else `Terminal` or `Lines { every }` by what stderr is.
    pub fn detect(quiet: bool, every: u64) -> Self {
        if quiet {
            Self::Hidden
        } else if std::io::stderr().is_terminal() {
            Self::Terminal
        } else {
            Self::Lines { every: every.max(1) }
        }
    }
}

/// A progress bar over `total` units of work.
#[derive(Debug)]
pub struct Bar {
    label: String,
    unit: String,
    total: u64,
    done: u64,
    /// Units counted as done before this process started (resumed runs): not in the rate.
    skipped: u64,
    mode: Mode,
    start: Instant,
    /// The terminal bar (`Mode::Terminal` only).
    bar: Option<indicatif::ProgressBar>,
}

impl Bar {
    /// A bar for `total` units called `unit` ("layers", "facts").
    pub fn new(label: impl Into<String>, total: u64, unit: impl Into<String>, mode: Mode) -> Self {
        let (label, unit) = (label.into(), unit.into());
        let bar = (mode == Mode::Terminal).then(|| {
            let style = indicatif::ProgressStyle::with_template(&format!(
                "{{msg}} [{{bar:24}}] {{pos}}/{{len}} {unit}, {{per_sec}}, elapsed {{elapsed}}, ETA {{eta}}"
            ))
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("#>-");
            let bar = indicatif::ProgressBar::with_draw_target(Some(total), indicatif::ProgressDrawTarget::stderr())
                .with_style(style)
                .with_message(label.clone());
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Self { label, unit, total, done: 0, skipped: 0, mode, start: Instant::now(), bar }
    }

    /// Counts `n` units as already done (resumed work), outside the rate and ETA.
    pub fn skip(&mut self, n: u64) {
        self.skipped += n;
        if let Some(bar) = &self.bar {
            bar.inc(n);
            bar.reset_eta();
        }
    }

    /// Replaces the label (the prompt being worked on, say).
    pub fn set_label(&mut self, label: impl Into<String>) {
        self.label = label.into();
        if let Some(bar) = &self.bar {
            bar.set_message(self.label.clone());
        }
    }

    /// Marks `n` more units done and redraws if due.
    pub fn inc(&mut self, n: u64) {
        self.done += n;
        let finished = self.skipped + self.done >= self.total;
        match self.mode {
            Mode::Hidden => {}
            Mode::Terminal => {
                if let Some(bar) = &self.bar {
                    bar.inc(n);
                    if finished {
                        bar.finish();
                    }
                }
            }
            Mode::Lines { every } => {
                if finished || self.done.is_multiple_of(every) {
                    eprintln!("{}", self.line());
                }
            }
        }
    }

    /// The text of the bar as it is now (the plain lines; the terminal bar is indicatif's).
    pub fn line(&self) -> String {
        let count = self.skipped + self.done;
        let width = 24usize;
        let filled = (width as u64 * count.min(self.total)).checked_div(self.total).map_or(width, |f| f as usize);
        let secs = self.start.elapsed().as_secs_f64();
        let rate = if secs > 0.0 { self.done as f64 / secs } else { 0.0 };
        let eta = if rate > 0.0 { format_secs(self.total.saturating_sub(count) as f64 / rate) } else { "?".into() };
        let skipped = if self.skipped > 0 { format!(" ({} resumed)", self.skipped) } else { String::new() };
        format!(
            "{} [{}{}] {count}/{} {}{skipped}, {} /s, elapsed {}, ETA {eta}",
            self.label,
            "#".repeat(filled),
            "-".repeat(width - filled),
            self.total,
            self.unit,
            format_rate(rate),
            format_secs(secs),
        )
    }
}

/// `1.23`, `0.0412`: three significant digits.
fn format_rate(r: f64) -> String {
    if r >= 100.0 {
        format!("{r:.0}")
    } else if r >= 1.0 {
        format!("{r:.2}")
    } else {
        format!("{r:.3}")
    }
}

/// `42s`, `3m05s`, `2h07m`.
pub fn format_secs(s: f64) -> String {
    let s = s.max(0.0).round() as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_counts_resumed_units_but_not_in_the_rate() {
        let mut b = Bar::new("facts", 10, "facts", Mode::Hidden);
        b.skip(4);
        b.inc(2);
        let line = b.line();
        assert!(line.starts_with("facts [##############----------] 6/10 facts (4 resumed), "), "{line}");
        assert!(line.contains("ETA "), "{line}");
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(format_secs(42.4), "42s");
        assert_eq!(format_secs(185.0), "3m05s");
        assert_eq!(format_secs(7620.0), "2h07m");
        assert_eq!(format_rate(0.04123), "0.041");
    }

    #[test]
    fn empty_work_is_a_full_bar() {
        let b = Bar::new("x", 0, "u", Mode::Hidden);
        assert!(b.line().contains("[########################] 0/0"));
    }
}
