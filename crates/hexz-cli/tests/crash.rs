//! Crash safety: `kill -9` of `hexz pack`, `flatten`, `extract`, `sign`,
//! `passwd --in-place` and `commit` at spread-out moments of their run, half of them over an
//! existing output. After every kill the output path holds nothing, the intact previous file, or the
//! complete new one — and the directory holds nothing else: no temporary files, ever.
//!
//! The normal run makes 60 kills (about a minute in release); `HEXZ_CRASH=full`
//! (`make crash`) makes 300. The counts are printed (`-- --nocapture`) and recorded in
//! docs/RELIABILITY.md.

mod common;

use common::{s, tmp, Dir};
use hexz_core::algo::encryption::Password;
use hexz_core::{File, OpenOptions, SnapshotStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const HEXZ: &str = env!("CARGO_BIN_EXE_hexz");

fn kills_per_command() -> u64 {
    if std::env::var("HEXZ_CRASH").is_ok_and(|v| v == "full") {
        60
    } else {
        12
    }
}

/// Deterministic pseudo-random data: compressible runs, random runs and zero blocks, so
/// packing takes a while and the archive has every kind of block.
fn image(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut v = vec![0u8; len];
    for (i, c) in v.chunks_mut(64 * 1024).enumerate() {
        match i % 4 {
            0 => {}
            1 => {
                for b in c.iter_mut() {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    *b = x as u8;
                }
            }
            _ => {
                for (j, b) in c.iter_mut().enumerate() {
                    *b = ((j / 16) as u64 ^ seed ^ i as u64) as u8;
                }
            }
        }
    }
    v
}

fn hexz(args: &[&str]) -> Command {
    let mut c = Command::new(HEXZ);
    c.args(args)
        .env("HEXZ_PASSWORD", "old password")
        .env("HEXZ_NEW_PASSWORD", "new password")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

fn run_ok(args: &[&str]) {
    let out = hexz(args).output().unwrap();
    assert!(
        out.status.success(),
        "hexz {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `args` to completion once and returns how long it took.
fn timed(args: &[&str]) -> Duration {
    let t = Instant::now();
    run_ok(args);
    t.elapsed()
}

/// Starts `args` and SIGKILLs it after `delay` (unless it finished first). Returns whether
/// the kill landed (the process was still running).
fn kill_after(args: &[&str], delay: Duration) -> bool {
    let mut child = hexz(args).stderr(Stdio::null()).spawn().unwrap();
    let t = Instant::now();
    while t.elapsed() < delay {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    let landed = child.try_wait().unwrap().is_none();
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    landed
}

/// splitmix64 for the kill moments.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) % n
    }
}

#[derive(Default)]
struct Tally {
    kills: u64,
    landed: u64,
    absent: u64,
    previous: u64,
    complete: u64,
    /// Kills that landed between linking the new file under its temporary name and renaming
    /// it over the target.
    window: u64,
}

impl Tally {
    fn report(&self, what: &str) {
        eprintln!(
            "CRASH {what}: {} runs killed ({} while running): output absent {}, previous file \
             intact {}, complete new file {}; 0 broken, 0 debris other than {} temporary \
             name(s) of a kill between link and rename",
            self.kills, self.landed, self.absent, self.previous, self.complete, self.window
        );
        assert!(
            self.landed * 2 >= self.kills,
            "{what}: most kills should land while the command runs"
        );
    }
}

/// The directory must hold exactly `expected` (sorted) names.
fn assert_no_debris(d: &Dir, expected: &[&str], what: &str) {
    let mut want: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(d.names(), want, "{what}: leftover files after kill -9");
}

/// `hexz pack --disk IMG -o OUT` in `d`, which must succeed.
fn pack_image(d: &Dir, img: &str, out: &str) {
    run_ok(&["pack", "--disk", s(&d.path(img)), "-o", s(&d.path(out))]);
}

fn read_disk(p: &Path, password: Option<&str>) -> hexz_core::Result<Vec<u8>> {
    let f = File::open_with(
        p,
        OpenOptions {
            password: password.map(|p| Password::new(p.as_bytes())),
            ..OpenOptions::default()
        },
    )?;
    hexz_core::ops::verify(&f, None)?;
    f.read_at(
        SnapshotStream::Disk,
        0,
        f.size(SnapshotStream::Disk) as usize,
    )
}

/// Prepares run `i` of a command whose odd runs write over an existing file: removes `out`,
/// and on odd runs puts `previous` there.
fn reset_over_previous(out: &Path, previous: &[u8], i: u64) {
    let _ = std::fs::remove_file(out);
    if i % 2 == 1 {
        std::fs::write(out, previous).unwrap();
    }
}

/// Judges `out` after killed run `i` (see [`reset_over_previous`]): absent (only allowed when
/// there was no previous file), the intact previous file, or a complete archive of `data`.
fn judge_archive(what: &str, out: &Path, previous: &[u8], data: &[u8], i: u64) -> Option<bool> {
    if !out.exists() {
        assert_eq!(i % 2, 0, "{what} over an existing file removed it");
        return None;
    }
    if i % 2 == 1 && std::fs::read(out).unwrap() == previous {
        return Some(false);
    }
    let got = read_disk(out, None).expect("the output is a complete archive");
    assert!(got == data, "{what} output has the wrong content");
    Some(true)
}

/// Kills `args` at `n` moments spread over its normal duration; after each, `check` judges
/// the output (`Some(true)` new, `Some(false)` previous, `None` absent) and the directory
/// must hold only `keep` plus the output. `reset(i)` prepares run `i`.
#[allow(clippy::too_many_arguments)]
fn kill_loop(
    what: &str,
    d: &Dir,
    args: &[&str],
    keep: &[&str],
    output: &str,
    seed: u64,
    reset: &dyn Fn(u64),
    check: &dyn Fn(u64) -> Option<bool>,
) {
    // The shortest of three runs: a first, cold run would stretch the kill moments past the
    // end of most later (warm) runs.
    let full = (0..3)
        .map(|_| {
            reset(0);
            timed(args)
        })
        .min()
        .unwrap();
    let mut rng = Rng(seed);
    let mut t = Tally::default();
    for i in 0..kills_per_command() {
        reset(i);
        // Spread over the run, with a little beyond its end to catch the final rename.
        let micros = (full.as_micros() as u64 * 11 / 10).max(2000);
        let delay = Duration::from_micros(rng.below(micros));
        t.kills += 1;
        if kill_after(args, delay) {
            t.landed += 1;
        }
        let present = d.path(output).exists();
        let mut names: Vec<&str> = keep.to_vec();
        if present && !names.contains(&output) {
            names.push(output);
        }
        // Replacing an existing file links the finished (fsynced) file under
        // `.NAME.tmp-PID-RANDOM` and renames that over the target at once: a kill between
        // the two system calls leaves that name (ops/atomic.rs). It must be whole, and the
        // next write into the directory removes it (checked after the loop).
        let prefix = format!(".{output}.tmp-");
        let window: Vec<String> = d
            .names()
            .into_iter()
            .filter(|n| n.starts_with(&prefix))
            .collect();
        if window.len() as u64 > t.window {
            t.window = window.len() as u64;
        }
        names.extend(window.iter().map(String::as_str));
        assert_no_debris(d, &names, &format!("{what} run {i} killed after {delay:?}"));
        match check(i) {
            None => t.absent += 1,
            Some(false) => t.previous += 1,
            Some(true) => t.complete += 1,
        }
    }
    // One uninterrupted run: it removes any temporary name a killed writer left.
    reset(1);
    let status = hexz(args).stderr(Stdio::null()).status().unwrap();
    assert!(status.success(), "{what}: a run after the kills failed");
    let mut names: Vec<&str> = keep.to_vec();
    if d.path(output).exists() && !names.contains(&output) {
        names.push(output);
    }
    assert_no_debris(d, &names, &format!("{what}: after an uninterrupted run"));
    reset(0);
    t.report(what);
}

#[test]
fn kill_9_during_pack_leaves_nothing_or_a_complete_archive() {
    let d = tmp();
    let data = image(48 << 20, 1);
    let old = image(2 << 20, 2);
    d.file("disk.img", &data);
    d.file("old.img", &old);
    pack_image(&d, "old.img", "old.hxz");
    let old_archive = std::fs::read(d.path("old.hxz")).unwrap();
    let out = d.path("out.hxz");
    kill_loop(
        "pack",
        &d,
        &[
            "pack",
            "--disk",
            s(&d.path("disk.img")),
            "-o",
            s(&out),
            "--compression",
            "zstd",
        ],
        &["disk.img", "old.img", "old.hxz"],
        "out.hxz",
        11,
        // Odd runs write over an existing (different) archive.
        &|i| reset_over_previous(&out, &old_archive, i),
        &|i| judge_archive("pack", &out, &old_archive, &data, i),
    );
}

#[test]
fn kill_9_during_flatten_and_extract() {
    let d = tmp();
    let base = image(16 << 20, 3);
    let mut data = base.clone();
    for i in (0..data.len()).step_by(1 << 20) {
        data[i..i + 5000].fill(0x77);
    }
    d.file("base.img", &base);
    d.file("v2.img", &data);
    pack_image(&d, "base.img", "base.hxz");
    run_ok(&[
        "pack",
        "--disk",
        s(&d.path("v2.img")),
        "--base",
        s(&d.path("base.hxz")),
        "-o",
        s(&d.path("v2.hxz")),
    ]);
    let keep = ["base.hxz", "base.img", "v2.hxz", "v2.img"];
    let flat = d.path("flat.hxz");
    kill_loop(
        "flatten",
        &d,
        &["flatten", s(&d.path("v2.hxz")), "-o", s(&flat)],
        &keep,
        "flat.hxz",
        12,
        &|_| {
            let _ = std::fs::remove_file(&flat);
        },
        &|_| {
            if !flat.exists() {
                return None;
            }
            let got = read_disk(&flat, None).expect("complete flattened archive");
            assert!(got == data, "flatten output has the wrong content");
            Some(true)
        },
    );
    let img = d.path("out.img");
    let previous = image(1 << 20, 9);
    kill_loop(
        "extract",
        &d,
        &["extract", s(&d.path("v2.hxz")), "-o", s(&img)],
        &keep,
        "out.img",
        13,
        &|i| reset_over_previous(&img, &previous, i),
        &|i| {
            if !img.exists() {
                assert_eq!(i % 2, 0, "extract over an existing file removed it");
                return None;
            }
            let got = std::fs::read(&img).unwrap();
            if i % 2 == 1 && got == previous {
                return Some(false);
            }
            assert!(got == data, "extracted image is incomplete or wrong");
            Some(true)
        },
    );
}

#[test]
fn kill_9_during_sign_and_passwd_in_place() {
    let d = tmp();
    let data = image(24 << 20, 4);
    d.file("disk.img", &data);
    run_ok(&["keygen", "-o", s(&d.path("key"))]);
    pack_image(&d, "disk.img", "a.hxz");
    let unsigned = std::fs::read(d.path("a.hxz")).unwrap();
    let a = d.path("a.hxz");
    let public = hexz_core::algo::signing::parse_public_key(
        &std::fs::read_to_string(d.path("key.pub")).unwrap(),
    )
    .unwrap();
    kill_loop(
        "sign",
        &d,
        &["sign", s(&a), "--key", s(&d.path("key"))],
        &["a.hxz", "disk.img", "key", "key.pub"],
        "a.hxz",
        14,
        &|_| std::fs::write(&a, &unsigned).unwrap(),
        &|_| {
            let now = std::fs::read(&a).expect("sign never removes the archive");
            if now == unsigned {
                return Some(false);
            }
            let f = File::open_with(
                &a,
                OpenOptions {
                    require_signer: Some(public),
                    ..OpenOptions::default()
                },
            )
            .expect("a changed archive is completely signed");
            hexz_core::ops::verify(&f, None).unwrap();
            Some(true)
        },
    );

    // passwd --in-place: the archive always opens with the old or the new password.
    std::fs::remove_file(&a).unwrap();
    run_ok(&[
        "pack",
        "--disk",
        s(&d.path("disk.img")),
        "--encrypt",
        "-o",
        s(&d.path("e.hxz")),
    ]);
    let e = d.path("e.hxz");
    let original = std::fs::read(&e).unwrap();
    kill_loop(
        "passwd --in-place",
        &d,
        &["passwd", s(&e), "--in-place"],
        &["disk.img", "e.hxz", "key", "key.pub"],
        "e.hxz",
        15,
        &|_| std::fs::write(&e, &original).unwrap(),
        &|_| match read_disk(&e, Some("old password")) {
            Ok(got) => {
                assert!(got == data);
                Some(false)
            }
            Err(_) => {
                let got = read_disk(&e, Some("new password"))
                    .expect("the archive opens with the old or the new password");
                assert!(got == data);
                Some(true)
            }
        },
    );
}

#[cfg(feature = "mount")]
#[test]
fn kill_9_during_commit_leaves_the_overlay_untouched() {
    use hexz_mount::overlay::Overlay;
    use hexz_mount::volume::Volume;
    let d = tmp();
    let base = image(24 << 20, 6);
    d.file("base.img", &base);
    pack_image(&d, "base.img", "base.hxz");
    // An overlay that changes a few bytes of every MiB: the child stores one block per MiB
    // and references the rest, as a commit after a mounted session would.
    let ov_path = d.path("changes.ovl");
    let mut data = base.clone();
    {
        let f = File::open(d.path("base.hxz")).unwrap();
        let ov = Overlay::create(&ov_path, &f, s(&d.path("base.hxz"))).unwrap();
        let vol = Volume::with_overlay(f, ov);
        for (n, at) in (0..data.len()).step_by(1 << 20).enumerate() {
            let patch = vec![n as u8 ^ 0x5a; 3000];
            data[at + 777..at + 3777].copy_from_slice(&patch);
            vol.write_at(SnapshotStream::Disk, (at + 777) as u64, &patch)
                .unwrap();
        }
        vol.sync().unwrap();
    }
    let overlay_bytes = std::fs::read(&ov_path).unwrap();
    let child = d.path("child.hxz");
    let base_archive = std::fs::read(d.path("base.hxz")).unwrap();
    let previous = d.path("prev.hxz");
    run_ok(&[
        "pack",
        "--disk",
        s(&d.path("base.img")),
        "-o",
        s(&previous),
        "--block-size",
        "16K",
    ]);
    let previous = std::fs::read(&previous).unwrap();
    std::fs::remove_file(d.path("prev.hxz")).unwrap();
    kill_loop(
        "commit",
        &d,
        &["commit", s(&ov_path), "-o", s(&child)],
        &["base.hxz", "base.img", "changes.ovl"],
        "child.hxz",
        16,
        &|i| reset_over_previous(&child, &previous, i),
        &|i| {
            // Neither the overlay nor the base is ever changed by a commit, killed or not.
            assert!(
                std::fs::read(&ov_path).unwrap() == overlay_bytes,
                "commit run {i} changed the overlay"
            );
            assert!(
                std::fs::read(d.path("base.hxz")).unwrap() == base_archive,
                "commit run {i} changed the base"
            );
            judge_archive("commit", &child, &previous, &data, i)
        },
    );
}

#[test]
fn debris_of_a_crashed_named_writer_is_cleaned_by_the_next_write() {
    // On file systems without O_TMPFILE the writer falls back to a named temporary; a crash
    // leaves it, and the next write in that directory removes it (its PID is gone).
    let d = tmp();
    d.file("disk.img", &image(1 << 20, 5));
    let stale = d.path(".out.hxz.tmp-2147483646-00112233aabb");
    std::fs::write(&stale, b"half an archive").unwrap();
    pack_image(&d, "disk.img", "out.hxz");
    assert_eq!(d.names(), vec!["disk.img", "out.hxz"]);
}
