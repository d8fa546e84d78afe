//! Corruption sweep through the `hexz` binary: small archives of every kind (LZ4 with two
//! streams, Zstandard with CDC, encrypted, signed, thin child, damaged parent under an intact
//! child) with a byte changed at sampled offsets and truncated at sampled lengths; `hexz
//! verify` and `hexz cat` must each either succeed with exactly the original bytes or exit
//! non-zero with one line on stderr — never a panic, a signal, or wrong bytes.
//!
//! Normal run: about 40 mutations per kind (two processes each). `HEXZ_SWEEP=full`
//! (`make sweep`): every 3rd offset and every 7th length.

mod common;

use common::{s, tmp, Dir};
use std::process::{Command, Output, Stdio};

const HEXZ: &str = env!("CARGO_BIN_EXE_hexz");
const BS: usize = 4096;

fn full() -> bool {
    std::env::var("HEXZ_SWEEP").is_ok_and(|v| v == "full")
}

fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|i| match (i / BS) % 3 {
            0 => (i % 13) as u8,
            1 => {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            }
            _ => 0,
        })
        .collect()
}

fn hexz(args: &[&str]) -> Output {
    Command::new(HEXZ)
        .args(args)
        .env("HEXZ_PASSWORD", "sweep")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn ok(args: &[&str]) {
    let o = hexz(args);
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[derive(Default)]
struct Tally {
    mutations: u64,
    exact: u64,
    clean_errors: u64,
    problems: Vec<String>,
}

/// Judges one process: Ok(true) succeeded, Ok(false) failed cleanly, Err(problem).
fn judge(o: &Output, what: &str) -> Result<bool, String> {
    let err = String::from_utf8_lossy(&o.stderr);
    match o.status.code() {
        None => Err(format!("{what}: killed by a signal: {err}")),
        Some(0) => Ok(true),
        Some(101) => Err(format!("{what}: panic (exit 101): {err}")),
        Some(_) if err.contains("panicked") => Err(format!("{what}: panic: {err}")),
        Some(_) => {
            let lines: Vec<&str> = err.trim_end().lines().collect();
            if lines.len() == 1 && !lines[0].trim().is_empty() {
                Ok(false)
            } else {
                Err(format!("{what}: error is not one line: {err:?}"))
            }
        }
    }
}

/// Writes each damaged version of `name` into `d` (then restores it) and runs verify and
/// cat on `target` (the archive the commands read: the damaged one or its child).
fn sweep(d: &Dir, name: &str, target: &str, extra: &[&str], want: &[u8], t: &mut Tally) {
    let path = d.path(name);
    let orig = std::fs::read(&path).unwrap();
    let n = orig.len();
    let (stride, tstride) = if full() {
        (3, 7)
    } else {
        (n / 30 + 1, n / 10 + 1)
    };
    let mut cases: Vec<(String, Vec<u8>)> = Vec::new();
    for i in (0..n).step_by(stride) {
        let mut b = orig.clone();
        b[i] ^= 1 << (i % 8);
        cases.push((format!("{name} byte {i}"), b));
    }
    for len in (0..n).step_by(tstride) {
        cases.push((format!("{name} truncated to {len}"), orig[..len].to_vec()));
    }
    let tp = d.path(target);
    for (what, bytes) in cases {
        std::fs::write(&path, &bytes).unwrap();
        t.mutations += 1;
        let mut v = vec!["verify", s(&tp)];
        v.extend_from_slice(extra);
        let mut c = vec!["cat", s(&tp)];
        c.extend_from_slice(extra);
        let (vo, co) = (hexz(&v), hexz(&c));
        let r = judge(&vo, &format!("{what}: verify")).and_then(|verified| {
            let catted = judge(&co, &format!("{what}: cat"))?;
            if catted && co.stdout != want {
                return Err(format!("{what}: cat printed WRONG BYTES"));
            }
            if verified && !catted {
                return Err(format!("{what}: verify passed but cat failed"));
            }
            Ok(catted)
        });
        match r {
            Ok(true) => t.exact += 1,
            Ok(false) => t.clean_errors += 1,
            Err(p) => t.problems.push(p),
        }
    }
    std::fs::write(&path, &orig).unwrap();
}

fn report(name: &str, t: &Tally) {
    eprintln!(
        "SWEEP-CLI {name}: {} mutations (verify + cat each), {} exact, {} clean errors, {} problems",
        t.mutations,
        t.exact,
        t.clean_errors,
        t.problems.len()
    );
    assert!(t.mutations > 0);
    assert!(t.problems.is_empty(), "{name}: {:#?}", t.problems);
}

#[test]
fn cli_sweep_plain_kinds() {
    let d = tmp();
    let disk = data(5 * BS + 100, 1);
    let mem = data(2 * BS, 2);
    d.file("disk.img", &disk);
    d.file("mem.img", &mem);
    let img = d.path("disk.img");
    let bs = "4K";
    ok(&[
        "pack",
        "--disk",
        s(&img),
        "--memory",
        s(&d.path("mem.img")),
        "-o",
        s(&d.path("lz4.hxz")),
        "--block-size",
        bs,
    ]);
    ok(&[
        "pack",
        "--disk",
        s(&img),
        "-o",
        s(&d.path("cdc.hxz")),
        "--compression",
        "zstd",
        "--cdc",
    ]);
    let mut t = Tally::default();
    sweep(&d, "lz4.hxz", "lz4.hxz", &[], &disk, &mut t);
    report("lz4", &t);
    let mut t = Tally::default();
    sweep(&d, "cdc.hxz", "cdc.hxz", &[], &disk, &mut t);
    report("zstd + CDC", &t);
}

#[test]
fn cli_sweep_encrypted_and_signed() {
    let d = tmp();
    let disk = data(5 * BS + 100, 3);
    d.file("disk.img", &disk);
    let img = d.path("disk.img");
    ok(&[
        "pack",
        "--disk",
        s(&img),
        "-o",
        s(&d.path("enc.hxz")),
        "--block-size",
        "4K",
        "--encrypt",
        "--kdf",
        "argon2id",
    ]);
    ok(&[
        "pack",
        "--disk",
        s(&img),
        "-o",
        s(&d.path("signed.hxz")),
        "--block-size",
        "4K",
    ]);
    ok(&["keygen", "-o", s(&d.path("key"))]);
    ok(&["sign", s(&d.path("signed.hxz")), "--key", s(&d.path("key"))]);
    let mut t = Tally::default();
    sweep(&d, "enc.hxz", "enc.hxz", &[], &disk, &mut t);
    report("encrypted", &t);
    let pk = d.path("key.pub");
    let mut t = Tally::default();
    sweep(
        &d,
        "signed.hxz",
        "signed.hxz",
        &["--pubkey", s(&pk)],
        &disk,
        &mut t,
    );
    report("signed (--pubkey)", &t);
}

#[test]
fn cli_sweep_thin_child_and_damaged_parent() {
    let d = tmp();
    let base = data(6 * BS, 4);
    let mut v2 = base.clone();
    v2[BS..BS + 300].fill(9);
    d.file("base.img", &base);
    d.file("v2.img", &v2);
    ok(&[
        "pack",
        "--disk",
        s(&d.path("base.img")),
        "-o",
        s(&d.path("base.hxz")),
        "--block-size",
        "4K",
    ]);
    ok(&[
        "pack",
        "--disk",
        s(&d.path("v2.img")),
        "--base",
        s(&d.path("base.hxz")),
        "-o",
        s(&d.path("v2.hxz")),
        "--block-size",
        "4K",
    ]);
    let mut t = Tally::default();
    sweep(&d, "v2.hxz", "v2.hxz", &[], &v2, &mut t);
    report("thin child", &t);
    let mut t = Tally::default();
    sweep(&d, "base.hxz", "v2.hxz", &[], &v2, &mut t);
    report("damaged parent under intact child", &t);
}
