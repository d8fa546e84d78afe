//! `hexz`: pack, inspect, read and verify `.hxz` snapshot archives.

mod cmd;
mod interrupt;
mod remote;
mod secret;
mod util;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Seekable, deduplicated, compressed snapshot archives.
#[derive(Parser)]
#[command(name = "hexz", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Pack a directory (or a tar stream) into a tree archive, or raw disk/memory images.
    Pack(cmd::pack::Args),
    /// Show an archive's header, streams, sizes, ratio and block counts.
    Info(cmd::info::Args),
    /// Write a file of a tree archive, or a byte range of a stream, to standard output.
    Cat(cmd::cat::Args),
    /// Extract a tree archive to a directory, or a whole stream to a file.
    Extract(cmd::extract::Args),
    /// Check every index page and block checksum of an archive (and its parent chain).
    Verify(cmd::verify::Args),
    /// Write a standalone copy of a thin snapshot, with no parent references.
    Flatten(cmd::flatten::Args),
    /// List a directory of a tree archive (-l long, -R recursive, --json).
    Ls(cmd::ls::Args),
    /// Show which byte ranges of each stream differ between two archives.
    Diff(cmd::diff::Args),
    /// Make an Ed25519 key pair for signing archives (NAME and NAME.pub).
    Keygen(cmd::keys::KeygenArgs),
    /// Sign an archive's header and index with a secret key.
    Sign(cmd::keys::SignArgs),
    /// Change the password of an encrypted archive (rewraps the key; data untouched).
    Passwd(cmd::keys::PasswdArgs),
    /// Download an archive from a URL and verify it (optionally with its parent chain).
    Pull(cmd::pull::Args),
    /// Upload an archive to s3:// (optionally with its parent chain); appears only when complete.
    Push(cmd::push::Args),
    /// Mount an archive's streams as files (`disk`, `memory`) with FUSE.
    #[cfg(feature = "mount")]
    Mount(cmd::mount::Args),
    /// Unmount a `hexz mount` and wait for it to finish.
    #[cfg(feature = "mount")]
    Unmount(cmd::mount::UnmountArgs),
    /// Serve an archive's streams over NBD (exports `disk` and `memory`).
    #[cfg(feature = "mount")]
    Serve(cmd::serve::Args),
    /// Turn a writable overlay into a thin child archive of its base.
    #[cfg(feature = "mount")]
    Commit(cmd::commit::Args),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) if e.use_stderr() => {
            // Usage errors: one line, like every other hexz error.
            let msg = e.to_string();
            let first: Vec<&str> = msg
                .lines()
                .map(str::trim)
                .skip_while(|l| l.is_empty())
                .take_while(|l| !l.is_empty())
                .collect();
            let first = first.join(" ");
            let first = first.trim_start_matches("error: ");
            eprintln!("hexz: error: {first} (see hexz --help)");
            return ExitCode::from(2);
        }
        Err(e) => {
            // --help and --version.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
    };
    let r = match cli.command {
        Command::Pack(a) => cmd::pack::run(a),
        Command::Info(a) => cmd::info::run(a),
        Command::Cat(a) => cmd::cat::run(a),
        Command::Extract(a) => cmd::extract::run(a),
        Command::Verify(a) => cmd::verify::run(a),
        Command::Flatten(a) => cmd::flatten::run(a),
        Command::Diff(a) => cmd::diff::run(a),
        Command::Ls(a) => cmd::ls::run(a),
        Command::Keygen(a) => cmd::keys::keygen(a),
        Command::Sign(a) => cmd::keys::sign(a),
        Command::Passwd(a) => cmd::keys::passwd(a),
        Command::Pull(a) => cmd::pull::run(a),
        Command::Push(a) => cmd::push::run(a),
        #[cfg(feature = "mount")]
        Command::Mount(a) => cmd::mount::run(a),
        #[cfg(feature = "mount")]
        Command::Unmount(a) => cmd::mount::unmount(a),
        #[cfg(feature = "mount")]
        Command::Serve(a) => cmd::serve::run(a),
        #[cfg(feature = "mount")]
        Command::Commit(a) => cmd::commit::run(a),
    };
    match r {
        Ok(code) => code,
        Err(e) => {
            if let Some(io) = e.downcast_ref::<std::io::Error>() {
                if io.kind() == std::io::ErrorKind::BrokenPipe {
                    return ExitCode::SUCCESS;
                }
            }
            let msg = format!("{e:#}").replace('\n', " ");
            eprintln!("hexz: error: {msg}");
            ExitCode::FAILURE
        }
    }
}
