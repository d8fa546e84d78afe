//! `hexz mount` and `hexz unmount`: an archive's streams as files under a FUSE mount, or a
//! file-tree archive's own tree (read-only).
//!
//! In the background (the default) the command starts a copy of itself in the foreground
//! mode as a daemon, hands it the password through a pipe, and returns once the daemon says
//! the mount is ready (or prints its one-line error).

use crate::secret::OpenArgs;
use anyhow::{bail, Context, Result};
use hexz_core::algo::encryption::Password;
use hexz_core::api::FileTree;
use hexz_core::{Error as CoreError, File, OpenOptions};
use hexz_mount::fs::{log, ArchiveFs};
use hexz_mount::fuse::{self, MountOptions};
use hexz_mount::overlay::Overlay;
use hexz_mount::tree::{fuse::mount_tree, TreeFs};
use hexz_mount::Volume;
use std::io::{BufRead, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::Duration;

#[derive(clap::Args)]
pub struct Args {
    /// The archive: a path, or an http(s):// or s3:// URL.
    #[arg(value_name = "ARCHIVE")]
    archive: String,
    /// An empty directory to mount on.
    #[arg(value_name = "MOUNTPOINT")]
    mountpoint: PathBuf,
    /// Make the streams writable: changed blocks go into this overlay file (created when
    /// missing; reused when it was made over this archive).
    #[arg(long, value_name = "FILE")]
    overlay: Option<PathBuf>,
    /// Stay in the foreground (SIGINT/SIGTERM unmount).
    #[arg(short = 'f', long)]
    foreground: bool,
    /// FUSE request threads.
    #[arg(long, value_name = "N", default_value_t = 4)]
    threads: usize,
    /// Let other users read the mount (FUSE allow_other).
    #[arg(long)]
    allow_other: bool,
    /// Tree archives: list directories with their entries' attributes (readdirplus):
    /// faster `ls -l` and `du`, slower `ls -R` and `find`.
    #[arg(long)]
    readdirplus: bool,
    /// Write the background mount's log (errors such as corrupt blocks) to this file.
    #[arg(long, value_name = "FILE")]
    log: Option<PathBuf>,
    #[command(flatten)]
    open: OpenArgs,
    /// Internal: run as the background mount's daemon.
    #[arg(long, hide = true)]
    daemon_child: bool,
}

#[derive(clap::Args)]
pub struct UnmountArgs {
    /// The mount point to unmount.
    #[arg(value_name = "MOUNTPOINT")]
    mountpoint: PathBuf,
}

/// Where the daemon of a mount point records its process id, so `hexz unmount` can wait
/// for it to finish (overlay synced and unlocked).
fn pid_file(canon_mp: &Path) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    // SAFETY: getuid cannot fail.
    let uid = unsafe { libc::getuid() };
    let dir = if uid == 0 {
        PathBuf::from("/run/hexz")
    } else {
        std::env::temp_dir().join(format!("hexz-{uid}"))
    };
    let h = blake3::hash(canon_mp.as_os_str().as_bytes()).to_hex();
    dir.join(format!("mount-{}.pid", &h[..16]))
}

/// Opens the archive at `location` with the password and signer options.
pub fn open_archive(location: &str, password: Option<Password>, a: &OpenArgs) -> Result<File> {
    let mut opts = OpenOptions {
        password,
        // A local archive is mapped: blocks decode straight from the page cache, without
        // a zeroed buffer and a `pread` copy per block (about 10% of the daemon's time
        // reading a disk image sequentially through the mount). Remote archives ignore it.
        mmap: true,
        ..OpenOptions::default()
    };
    if let Some(pk) = &a.pubkey {
        opts.require_signer = Some(crate::secret::read_pubkey(pk)?);
    }
    File::open_location(location, opts).with_context(|| format!("opening {location}"))
}

/// The password to open `location` with: from --password-file or HEXZ_PASSWORD, else a
/// prompt if the archive turns out to be encrypted (None for plain archives).
pub fn resolve_password(location: &str, a: &OpenArgs) -> Result<Option<Password>> {
    if a.password_file.is_some() || std::env::var_os("HEXZ_PASSWORD").is_some() {
        return Ok(Some(crate::secret::get_password(
            a.password_file.as_deref(),
            "HEXZ_PASSWORD",
            "Password",
            false,
        )?));
    }
    let probe = OpenOptions {
        cache_bytes: 0,
        read_ahead: 0,
        ..OpenOptions::default()
    };
    match File::open_location(location, probe) {
        Err(CoreError::PasswordRequired(_)) => Ok(Some(crate::secret::get_password(
            None,
            "HEXZ_PASSWORD",
            &format!("Password for {location}"),
            false,
        )?)),
        Err(e) => Err(anyhow::Error::new(e).context(format!("opening {location}"))),
        Ok(_) => Ok(None),
    }
}

/// The location recorded in an overlay: absolute for local paths, so `hexz commit` finds
/// the base from anywhere.
pub fn absolute_location(location: &str) -> String {
    if location.contains("://") {
        return location.to_string();
    }
    std::fs::canonicalize(location)
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| location.to_string())
}

pub fn run(a: Args) -> Result<ExitCode> {
    if a.daemon_child {
        return run_daemon(a);
    }
    fuse::check_mountpoint(&a.mountpoint)?;
    let password = resolve_password(&a.archive, &a.open)?;
    if a.foreground {
        return run_foreground(&a, password, None);
    }
    spawn_daemon(&a, password)
}

fn spawn_daemon(a: &Args, password: Option<Password>) -> Result<ExitCode> {
    let exe = std::env::current_exe().context("finding the hexz executable")?;
    let stderr = match &a.log {
        Some(p) => Stdio::from(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .with_context(|| format!("opening log file {}", p.display()))?,
        ),
        None => Stdio::null(),
    };
    use std::os::unix::process::CommandExt;
    let mut child = Command::new(exe)
        .args(std::env::args_os().skip(1))
        .arg("--foreground")
        .arg("--daemon-child")
        .env_remove("HEXZ_PASSWORD")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .process_group(0)
        .spawn()
        .context("starting the mount daemon")?;
    {
        let mut stdin = child.stdin.take().context("daemon stdin")?;
        let mut msg = Vec::new();
        match &password {
            Some(p) => {
                msg.extend_from_slice(&(p.as_bytes().len() as u32).to_le_bytes());
                msg.extend_from_slice(p.as_bytes());
            }
            None => msg.extend_from_slice(&u32::MAX.to_le_bytes()),
        }
        stdin
            .write_all(&msg)
            .context("handing the password to the mount daemon")?;
    }
    let stdout = child.stdout.take().context("daemon stdout")?;
    let mut line = String::new();
    std::io::BufReader::new(stdout).read_line(&mut line)?;
    let line = line.trim_end();
    if line == "ready" {
        return Ok(ExitCode::SUCCESS);
    }
    let _ = child.wait();
    if line.is_empty() {
        bail!("the mount daemon exited before the mount was ready");
    }
    bail!("{}", line.trim_start_matches("error: "))
}

fn run_daemon(a: Args) -> Result<ExitCode> {
    let mut len = [0u8; 4];
    std::io::stdin()
        .read_exact(&mut len)
        .context("reading the password pipe")?;
    let len = u32::from_le_bytes(len);
    let password = if len == u32::MAX {
        None
    } else if len > 1 << 20 {
        bail!("password pipe: length {len} is too large");
    } else {
        let mut p = vec![0u8; len as usize];
        std::io::stdin()
            .read_exact(&mut p)
            .context("reading the password pipe")?;
        Some(Password::new(p))
    };
    let mut out = std::io::stdout();
    let r = run_foreground(
        &a,
        password,
        Some(&mut || {
            let _ = writeln!(std::io::stdout(), "ready");
            let _ = std::io::stdout().flush();
            // SAFETY: replaces our stdout with /dev/null so later writes cannot raise SIGPIPE.
            unsafe {
                let fd = libc::open(c"/dev/null".as_ptr(), libc::O_WRONLY);
                if fd >= 0 {
                    libc::dup2(fd, 1);
                    libc::close(fd);
                }
            }
        }),
    );
    if let Err(e) = &r {
        let msg = format!("{e:#}").replace('\n', " ");
        let _ = writeln!(out, "error: {msg}");
        log(format!("mount failed: {msg}"));
    }
    r
}

fn run_foreground(
    a: &Args,
    password: Option<Password>,
    ready: Option<&mut dyn FnMut()>,
) -> Result<ExitCode> {
    // Block termination signals before any thread starts, so only this thread sees them.
    let signals = hexz_mount::signals::block_termination();
    let file = open_archive(&a.archive, password, &a.open)?;
    let opts = MountOptions {
        threads: a.threads.clamp(1, 64),
        allow_other: a.allow_other,
        fsname: format!("hexz:{}", a.archive.replace([' ', ','], "_")),
        readdirplus: a.readdirplus,
    };
    let tree = FileTree::open(&file).with_context(|| format!("opening {}", a.archive))?;
    let mounted = match tree {
        Some(tree) => {
            if a.overlay.is_some() {
                bail!(
                    "{} is a file-tree archive, which mounts read-only: --overlay applies to \
                     stream archives",
                    a.archive
                );
            }
            let fs = TreeFs::new(tree).with_context(|| format!("opening {}", a.archive))?;
            mount_tree(Arc::new(fs), &a.mountpoint, &opts)?
        }
        None => mount_streams(a, file, &opts)?,
    };
    serve_until_unmounted(a, mounted, ready, &signals)
}

/// Mounts a streams archive (`disk`, `memory` files), writable with `--overlay`.
fn mount_streams(a: &Args, file: File, opts: &MountOptions) -> Result<fuse::Mounted> {
    let volume = match &a.overlay {
        Some(p) => {
            let ov = Overlay::open_or_create(p, &file, &absolute_location(&a.archive))?;
            Volume::with_overlay(file, ov)
        }
        None => Volume::new(file),
    };
    // SAFETY: getuid/getgid cannot fail.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let fs = Arc::new(ArchiveFs::new(Arc::new(volume), uid, gid));
    Ok(fuse::mount(fs, &a.mountpoint, opts)?)
}

/// Signals "ready", then serves until a signal or an unmount from outside; unmounts.
fn serve_until_unmounted(
    a: &Args,
    mounted: fuse::Mounted,
    ready: Option<&mut dyn FnMut()>,
    signals: &hexz_mount::signals::Signals,
) -> Result<ExitCode> {
    let pidf = pid_file(mounted.mountpoint());
    if let Some(dir) = pidf.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let _ = std::fs::write(&pidf, std::process::id().to_string());
    log(format!(
        "mounted {} on {}{}",
        a.archive,
        mounted.mountpoint().display(),
        if a.overlay.is_some() {
            " (writable)"
        } else {
            ""
        }
    ));
    if let Some(f) = ready {
        f();
    }
    loop {
        if let Some(sig) = signals.wait(Duration::from_millis(200)) {
            log(format!("signal {sig}: unmounting"));
            break;
        }
        if mounted.is_finished() {
            break;
        }
    }
    let mp = mounted.mountpoint().to_path_buf();
    let r = mounted.unmount();
    let _ = std::fs::remove_file(&pidf);
    r.with_context(|| format!("unmounting {}", mp.display()))?;
    log(format!("unmounted {}", mp.display()));
    Ok(ExitCode::SUCCESS)
}

fn process_alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks the process exists.
    let alive = unsafe { libc::kill(pid, 0) } == 0;
    alive && std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
}

pub fn unmount(a: UnmountArgs) -> Result<ExitCode> {
    let canon = std::fs::canonicalize(&a.mountpoint)
        .with_context(|| format!("mount point {}", a.mountpoint.display()))?;
    if !fuse::is_mountpoint(&canon) {
        bail!("{} is not mounted", a.mountpoint.display());
    }
    let pidf = pid_file(&canon);
    let pid = std::fs::read_to_string(&pidf)
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok());
    fuse::unmount_path(&canon, false)?;
    if let Some(pid) = pid {
        // Wait for the daemon to sync its overlay and exit (it notices the unmount at once).
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while process_alive(pid) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if process_alive(pid) {
            bail!(
                "{} was unmounted, but its hexz process {pid} has not exited",
                a.mountpoint.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
