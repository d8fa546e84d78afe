//! Shared CLI helpers: size parsing and formatting, progress bars.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Parses a size with an optional binary suffix: `4096`, `64K`, `64KiB`, `1M`, `2G`, `1T`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, suffix) = t.split_at(split);
    if num.is_empty() {
        return Err(format!("'{s}' is not a size (examples: 4096, 64K, 1M, 2G)"));
    }
    let n: u64 = num
        .parse()
        .map_err(|_| format!("'{s}' is not a size (number too large?)"))?;
    let mult: u64 = match suffix.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        other => {
            return Err(format!(
                "unknown size suffix '{other}' in '{s}' (use K, M, G or T)"
            ))
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("size '{s}' is too large"))
}

/// Formats a byte count for people: `512 B`, `64.0 KiB`, `1.50 GiB`.
pub fn human(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if v >= 100.0 {
        format!("{v:.0} {}", UNITS[u])
    } else if v >= 10.0 {
        format!("{v:.1} {}", UNITS[u])
    } else {
        format!("{v:.2} {}", UNITS[u])
    }
}

/// A byte progress bar on stderr; hidden automatically when stderr is not a terminal.
pub fn progress_bar(total: Option<u64>, what: &str) -> ProgressBar {
    let pb = match total {
        Some(t) => ProgressBar::with_draw_target(Some(t), ProgressDrawTarget::stderr()),
        None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()),
    };
    let style = if total.is_some() {
        "{msg:8} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}"
    } else {
        "{msg:8} {spinner} {bytes} {binary_bytes_per_sec}"
    };
    if let Ok(st) = ProgressStyle::with_template(style) {
        pb.set_style(st.progress_chars("=> "));
    }
    pb.set_message(what.to_string());
    pb
}

/// One progress bar per stream for pack-like operations, replaced when the stream changes.
#[derive(Default)]
pub struct StreamBars(std::sync::Mutex<Option<(hexz_core::SnapshotStream, ProgressBar)>>);

impl StreamBars {
    /// Updates (or starts) the bar of the stream `p` reports on.
    pub fn update(&self, p: &hexz_core::ops::PackProgress) {
        let mut g = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if g.as_ref().is_none_or(|(s, _)| *s != p.stream) {
            if let Some((_, old)) = g.take() {
                old.finish_and_clear();
            }
            *g = Some((p.stream, progress_bar(p.total, p.stream.name())));
        }
        if let Some((_, pb)) = g.as_ref() {
            pb.set_position(p.done);
        }
    }

    /// Removes the current bar.
    pub fn finish(&self) {
        if let Some((_, pb)) = self.0.lock().unwrap_or_else(|e| e.into_inner()).take() {
            pb.finish_and_clear();
        }
    }
}

/// One progress bar per archive for transfers (push, pull), replaced when the archive changes.
pub struct ArchiveBars {
    label: &'static str,
    bar: std::sync::Mutex<Option<(String, ProgressBar)>>,
}

impl ArchiveBars {
    /// Bars labelled `label` (e.g. "push").
    pub fn new(label: &'static str) -> Self {
        ArchiveBars {
            label,
            bar: std::sync::Mutex::new(None),
        }
    }

    /// Updates (or starts) the bar of archive `what`.
    pub fn update(&self, what: &str, done: u64, total: u64) {
        let mut g = self.bar.lock().unwrap_or_else(|e| e.into_inner());
        if g.as_ref().is_none_or(|(w, _)| w != what) {
            if let Some((_, old)) = g.take() {
                old.finish_and_clear();
            }
            *g = Some((what.to_string(), progress_bar(Some(total), self.label)));
        }
        if let Some((_, pb)) = g.as_ref() {
            pb.set_position(done);
        }
    }

    /// Removes the current bar.
    pub fn finish(&self) {
        if let Some((_, pb)) = self.bar.lock().unwrap_or_else(|e| e.into_inner()).take() {
            pb.finish_and_clear();
        }
    }
}

/// Open options for reading whole streams front to back (extract, cat, flatten): positional
/// reads instead of a memory map and a small block cache, so resident memory stays bounded by
/// the chunks in flight; no read-ahead (the readers ask for large chunks themselves).
pub fn streaming_open_options() -> hexz_core::OpenOptions {
    hexz_core::OpenOptions {
        mmap: false,
        cache_bytes: 8 << 20,
        read_ahead: 0,
        ..hexz_core::OpenOptions::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64K"), Ok(65536));
        assert_eq!(parse_size("64KiB"), Ok(65536));
        assert_eq!(parse_size("1m"), Ok(1 << 20));
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        assert!(parse_size("K").is_err());
        assert!(parse_size("12Q").is_err());
        assert!(parse_size("99999999999T").is_err());
        assert_eq!(human(512), "512 B");
        assert_eq!(human(65536), "64.0 KiB");
        assert_eq!(human(3 << 29), "1.50 GiB");
    }
}
