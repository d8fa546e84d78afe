//! `hexz diff`.

use crate::util::human;
use anyhow::{Context, Result};
use hexz_core::ops::diff;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// First archive (path or URL).
    a: PathBuf,
    /// Second archive (path or URL).
    b: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    /// Exit with status 1 when the archives differ (like diff/cmp), 0 when identical.
    #[arg(long)]
    exit_code: bool,
    /// Most ranges to list per stream in text output (all are in --json).
    #[arg(long, default_value_t = 20)]
    max_ranges: usize,
    #[command(flatten)]
    open: crate::secret::OpenArgs,
}

pub fn run(a: Args) -> Result<ExitCode> {
    let fa = crate::secret::open(&a.a, Default::default(), &a.open)?;
    let fb = crate::secret::open(&a.b, Default::default(), &a.open)?;
    if let (Some(ta), Some(tb)) = (
        hexz_core::api::FileTree::open(&fa)?,
        hexz_core::api::FileTree::open(&fb)?,
    ) {
        return super::tree::diff(&ta, &tb, a.json, a.exit_code);
    }
    let r = diff(&fa, &fb)
        .with_context(|| format!("comparing {} and {}", a.a.display(), a.b.display()))?;
    if a.json {
        let streams: Vec<_> = r
            .streams
            .iter()
            .map(|s| {
                serde_json::json!({
                    "stream": s.stream.name(), "size_a": s.size_a, "size_b": s.size_b,
                    "differing_bytes": s.differing_bytes(),
                    "ranges": s.ranges.iter().map(|(o, l)| serde_json::json!({"offset": o, "length": l})).collect::<Vec<_>>(),
                })
            })
            .collect();
        let v = serde_json::json!({
            "a": a.a.display().to_string(), "b": a.b.display().to_string(),
            "identical": r.identical(), "unique_bytes_a": r.unique_a, "unique_bytes_b": r.unique_b,
            "decoded_bytes": r.decoded_bytes, "streams": streams,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        for s in &r.streams {
            println!(
                "{}: {} differ in {} ranges (size {} vs {})",
                s.stream,
                human(s.differing_bytes()),
                s.ranges.len(),
                human(s.size_a),
                human(s.size_b)
            );
            for (o, l) in s.ranges.iter().take(a.max_ranges) {
                println!("  {:#014x}..{:#014x}  {}", o, o + l, human(*l));
            }
            if s.ranges.len() > a.max_ranges {
                println!(
                    "  … {} more (use --json for all)",
                    s.ranges.len() - a.max_ranges
                );
            }
        }
        println!(
            "unique content: {} only in {}, {} only in {}",
            human(r.unique_a),
            a.a.display(),
            human(r.unique_b),
            a.b.display()
        );
    }
    Ok(if a.exit_code && !r.identical() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
