//! `hexz serve ARCHIVE --nbd HOST:PORT`: the streams as NBD exports `disk` and `memory`.

use super::mount::{absolute_location, open_archive, resolve_password};
use crate::secret::OpenArgs;
use anyhow::{Context, Result};
use hexz_mount::fs::log;
use hexz_mount::nbd::{Listen, Server};
use hexz_mount::overlay::Overlay;
use hexz_mount::Volume;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

#[derive(clap::Args)]
pub struct Args {
    /// The archive: a path, or an http(s):// or s3:// URL.
    #[arg(value_name = "ARCHIVE")]
    archive: String,
    /// Serve over NBD on HOST:PORT (port 0 picks a free port), or unix:PATH.
    #[arg(long, value_name = "HOST:PORT")]
    nbd: String,
    /// Make the exports writable: changed blocks go into this overlay file.
    #[arg(long, value_name = "FILE")]
    overlay: Option<PathBuf>,
    #[command(flatten)]
    open: OpenArgs,
}

pub fn run(a: Args) -> Result<ExitCode> {
    let listen = Listen::parse(&a.nbd)?;
    let password = resolve_password(&a.archive, &a.open)?;
    let signals = hexz_mount::signals::block_termination();
    let file = open_archive(&a.archive, password, &a.open)?;
    let volume = match &a.overlay {
        Some(p) => {
            let ov = Overlay::open_or_create(p, &file, &absolute_location(&a.archive))?;
            Volume::with_overlay(file, ov)
        }
        None => Volume::new(file),
    };
    let exports: Vec<&str> = volume.streams().iter().map(|s| s.name()).collect();
    let server = Arc::new(Server::bind(Arc::new(volume), &listen)?);
    let addr = server.local_addr();
    eprintln!(
        "hexz: serving {} over NBD on {addr} (exports: {}{})",
        a.archive,
        exports.join(", "),
        if a.overlay.is_some() {
            ", writable"
        } else {
            ", read-only"
        }
    );
    let stop = server.stopper();
    let srv = server.clone();
    let t = std::thread::Builder::new()
        .name("nbd-accept".into())
        .spawn(move || srv.run())
        .context("starting the NBD server")?;
    loop {
        if let Some(sig) = signals.wait(Duration::from_millis(200)) {
            log(format!("signal {sig}: stopping the NBD server"));
            break;
        }
        if t.is_finished() {
            break;
        }
    }
    stop.store(true, Ordering::SeqCst);
    match t.join() {
        Ok(r) => r.context("NBD server")?,
        Err(_) => anyhow::bail!("the NBD server thread panicked"),
    }
    Ok(ExitCode::SUCCESS)
}
