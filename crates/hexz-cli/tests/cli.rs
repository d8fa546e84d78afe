//! The `hexz` binary end to end: pack, info, cat, extract, verify, and how it fails.

use hexz_core::{File, SnapshotStream};
use serde_json::Value;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

mod common;
use common::{s, tmp};

fn hexz() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hexz"))
}

/// Runs hexz with `args`, feeding `stdin` if given.
fn run(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut c = hexz();
    c.args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
    let mut child = c.spawn().expect("spawn hexz");
    if let Some(data) = stdin {
        let mut w = child.stdin.take().unwrap();
        let data = data.to_vec();
        std::thread::spawn(move || {
            let _ = w.write_all(&data);
        });
    }
    child.wait_with_output().expect("wait for hexz")
}

fn ok(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let o = run(args, stdin);
    assert!(
        o.status.success(),
        "hexz {args:?} failed ({}): {}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(!String::from_utf8_lossy(&o.stderr).contains("panicked"));
    o
}

/// Runs a command that must fail: non-zero exit, exactly one stderr line starting with
/// "hexz: error:", no panic. Returns that line.
fn fails(args: &[&str], stdin: Option<&[u8]>) -> String {
    let o = run(args, stdin);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(
        !o.status.success(),
        "hexz {args:?} succeeded; stderr: {err}"
    );
    assert!(
        o.status.code().is_some(),
        "hexz {args:?} died from a signal: {err}"
    );
    assert!(!err.contains("panicked"), "hexz {args:?} panicked: {err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "hexz {args:?}: stderr is not one line: {err:?}"
    );
    assert!(
        lines[0].starts_with("hexz: error: "),
        "hexz {args:?}: stderr does not start with 'hexz: error: ': {err:?}"
    );
    lines[0].to_string()
}

/// splitmix64 filler.
fn fill(seed: u64, out: &mut [u8]) {
    let mut x = seed;
    for c in out.chunks_mut(8) {
        x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        c.copy_from_slice(&z.to_le_bytes()[..c.len()]);
    }
}

/// `len` bytes: 64 KiB regions cycling through random, zero, text-like and a repeat of the
/// first region, ending in a partial region.
fn sample(len: usize, seed: u64) -> Vec<u8> {
    let r = 64 << 10;
    let mut v = vec![0u8; len];
    let mut first = vec![0u8; r];
    fill(seed, &mut first);
    for (i, c) in v.chunks_mut(r).enumerate() {
        match i % 4 {
            0 => fill(seed + i as u64, c),
            1 => {}
            2 => {
                for (j, x) in c.iter_mut().enumerate() {
                    *x = b"the quick brown fox "[j % 20] ^ (i as u8);
                }
            }
            _ => c.copy_from_slice(&first[..c.len()]),
        }
    }
    v
}

fn zero_blocks(data: &[u8], bs: usize) -> u64 {
    data.chunks(bs)
        .filter(|c| c.iter().all(|&b| b == 0))
        .count() as u64
}

fn info_json(archive: &Path) -> Value {
    let o = ok(&["info", "--json", s(archive)], None);
    serde_json::from_slice(&o.stdout).expect("info --json is JSON")
}

// ---------------------------------------------------------------------------------------------

#[test]
fn pack_then_info_for_each_codec_level_and_block_size() {
    let d = tmp();
    let data = sample((3 << 20) + 12345, 1);
    let img = d.file("disk.img", &data);
    let cases: [(&str, Option<&str>, &str, usize, i64); 5] = [
        ("lz4", None, "64K", 64 << 10, 0),
        ("zstd", None, "64K", 64 << 10, 3),
        ("zstd", Some("19"), "1M", 1 << 20, 19),
        ("zstd", Some("1"), "1M", 1 << 20, 1),
        ("none", None, "64K", 64 << 10, 0),
    ];
    for (codec, level, bsz, bs, want_level) in cases {
        let out = d.path(&format!("{codec}-{bsz}-{}.hxz", level.unwrap_or("d")));
        let mut args = vec![
            "pack",
            "--disk",
            s(&img),
            "-o",
            s(&out),
            "--compression",
            codec,
            "--block-size",
            bsz,
        ];
        if let Some(l) = level {
            args.extend(["--level", l]);
        }
        let o = ok(&args, None);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.starts_with("packed "), "{err}");
        let archive_len = std::fs::metadata(&out).unwrap().len();

        let v = info_json(&out);
        let blocks = data.len().div_ceil(bs) as u64;
        let zero = zero_blocks(&data, bs);
        assert_eq!(v["compression"], codec, "{v}");
        assert_eq!(v["level"], want_level, "{v}");
        assert_eq!(v["block_size"], bs as u64);
        assert_eq!(v["chunking"], "fixed");
        assert_eq!(v["format_version"], "1.1");
        assert_eq!(v["archive_bytes"], archive_len);
        assert_eq!(v["logical_bytes"], data.len() as u64);
        assert_eq!(v["flags"], serde_json::json!(["bound-crc"]));
        assert_eq!(v["path"], s(&out));
        assert_eq!(v["archive_id"].as_str().unwrap().len(), 32);
        let st = v["streams"].as_array().unwrap();
        assert_eq!(st.len(), 1);
        assert_eq!(st[0]["stream"], "disk");
        assert_eq!(st[0]["logical_size"], data.len() as u64);
        assert_eq!(st[0]["blocks"], blocks);
        assert_eq!(st[0]["zero_blocks"], zero);
        assert_eq!(st[0]["index_pages"], 1);
        let ratio = v["ratio"].as_f64().unwrap();
        assert!((ratio - data.len() as f64 / archive_len as f64).abs() < 1e-9);
        if codec == "none" {
            // Zero blocks and repeats are not stored; the rest is stored as is.
            let stored = st[0]["stored_bytes"].as_u64().unwrap();
            assert!(stored < data.len() as u64);
        }

        let o = ok(&["info", s(&out)], None);
        let text = String::from_utf8(o.stdout).unwrap();
        let comp_line = if want_level != 0 {
            format!("compression  {codec} level {want_level}\n")
        } else {
            format!("compression  {codec}\n")
        };
        assert!(text.contains(&comp_line), "{text}");
        let bs_h = if bs == 1 << 20 {
            "1.00 MiB"
        } else {
            "64.0 KiB"
        };
        assert!(
            text.contains(&format!("blocks       fixed {bs_h}\n")),
            "{text}"
        );
        assert!(text.contains("format       hexz 1.1\n"), "{text}");
        assert!(
            text.contains(&format!("in {blocks} blocks ({zero} zero)")),
            "{text}"
        );
        assert!(text.contains("stream disk "), "{text}");

        // Every byte comes back.
        let o = ok(&["cat", s(&out)], None);
        assert!(o.stdout == data, "{codec} {bsz}: cat differs");
    }
}

#[test]
fn pack_json_summary_and_cdc_info() {
    let d = tmp();
    let data = sample(1 << 20, 2);
    let img = d.file("d.img", &data);
    let out = d.path("c.hxz");
    let o = ok(
        &[
            "pack",
            "--disk",
            s(&img),
            "-o",
            s(&out),
            "--cdc",
            "--avg",
            "16K",
            "--json",
        ],
        None,
    );
    let v: Value = serde_json::from_slice(&o.stdout).expect("pack --json is JSON");
    assert_eq!(v["output"], s(&out));
    assert_eq!(v["logical_bytes"], data.len() as u64);
    assert_eq!(v["archive_bytes"], std::fs::metadata(&out).unwrap().len());
    assert_eq!(v["disk"]["input_bytes"], data.len() as u64);
    assert!(v["memory"].is_null());
    let i = info_json(&out);
    assert_eq!(i["chunking"], "cdc");
    assert_eq!(
        (&i["cdc_min"], &i["block_size"], &i["cdc_max"]),
        (&Value::from(4096), &Value::from(16384), &Value::from(65536))
    );
    assert_eq!(i["flags"], serde_json::json!(["cdc", "bound-crc"]));
    assert_eq!(i["streams"][0]["blocks"], v["disk"]["blocks"]);
    let o = ok(&["cat", s(&out)], None);
    assert!(o.stdout == data);
}

/// `pack` keeps every stored block inside one 8 MiB cell of the part grid (docs/FORMAT.md,
/// "Layout") and reports the zeros that cost in `--json`: 20 MiB of random 64 KiB blocks,
/// stored raw from offset 512, would cross the line at 8 MiB; the block there moves up by
/// 8 MiB - 512 - 127 * 64 KiB = 65,024 bytes, and the blocks after it then meet the line
/// at 16 MiB exactly.
#[test]
fn pack_keeps_blocks_inside_the_part_grid() {
    let d = tmp();
    let mut data = vec![0u8; 20 << 20];
    fill(9, &mut data);
    let img = d.file("r.img", &data);
    let out = d.path("r.hxz");
    let o = ok(&["pack", "--disk", s(&img), "-o", s(&out), "--json"], None);
    let v: Value = serde_json::from_slice(&o.stdout).expect("pack --json is JSON");
    assert_eq!(v["disk"]["padding_bytes"], 65_024);
    assert_eq!(v["disk"]["stored_bytes"], data.len() as u64);
    assert_eq!(v["archive_bytes"], std::fs::metadata(&out).unwrap().len());
    let f = File::open(&out).unwrap();
    for e in f.entries(SnapshotStream::Disk).map(|e| e.unwrap()) {
        let (a, b) = (
            e.stored_offset,
            e.stored_offset + u64::from(e.stored_len) - 1,
        );
        assert_eq!(a >> 23, b >> 23, "block stored at {a}-{b} crosses a line");
    }
    assert!(ok(&["cat", s(&out)], None).stdout == data);
    assert!(ok(&["verify", s(&out)], None).status.success());
}

#[test]
fn pack_from_stdin_into_both_streams() {
    let d = tmp();
    let disk = sample((2 << 20) + 3, 3);
    let mem = sample((1 << 20) + 77, 4);
    let img = d.file("disk.img", &disk);
    let out = d.path("vm.hxz");
    ok(
        &["pack", "--disk", s(&img), "--memory", "-", "-o", s(&out)],
        Some(&mem),
    );
    let v = info_json(&out);
    let st = v["streams"].as_array().unwrap();
    assert_eq!(st.len(), 2);
    assert_eq!(st[1]["stream"], "memory");
    assert_eq!(st[1]["logical_size"], mem.len() as u64);
    assert_eq!(v["logical_bytes"], (disk.len() + mem.len()) as u64);
    let o = ok(&["cat", "--stream", "memory", s(&out)], None);
    assert!(o.stdout == mem);
    let o = ok(&["cat", "--stream", "disk", s(&out)], None);
    assert!(o.stdout == disk);

    // Disk from stdin alone; an empty stdin gives an empty stream.
    let out2 = d.path("stdin.hxz");
    ok(&["pack", "--disk", "-", "-o", s(&out2)], Some(&disk));
    assert!(ok(&["cat", s(&out2)], None).stdout == disk);
    let out3 = d.path("empty.hxz");
    ok(&["pack", "--disk", "-", "-o", s(&out3)], Some(b""));
    let v = info_json(&out3);
    assert_eq!(v["streams"][0]["logical_size"], 0);
    assert_eq!(v["streams"][0]["blocks"], 0);
    assert!(ok(&["cat", s(&out3)], None).stdout.is_empty());
    let o = ok(&["verify", s(&out3)], None);
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("ok:"));
}

#[test]
fn cat_offset_and_length_select_the_slice() {
    let d = tmp();
    let disk = sample((3 << 20) + 999, 5);
    let mem = sample(300_000, 6);
    let img = d.file("disk.img", &disk);
    let memf = d.file("mem.img", &mem);
    let out = d.path("a.hxz");
    ok(
        &[
            "pack",
            "--disk",
            s(&img),
            "--memory",
            s(&memf),
            "-o",
            s(&out),
        ],
        None,
    );
    let n = disk.len();
    let cases: Vec<(&str, &str, Option<&str>, &[u8])> = vec![
        ("disk", "0", Some("1"), &disk[..1]),
        ("disk", "100K", Some("5000"), &disk[102_400..107_400]),
        ("disk", "65535", Some("2"), &disk[65_535..65_537]),
        ("disk", "1M", Some("1M"), &disk[1 << 20..2 << 20]),
        ("disk", "3M", None, &disk[3 << 20..]),
        ("disk", "1", Some("0"), &[]),
        ("memory", "4096", Some("200000"), &mem[4096..204_096]),
        ("memory", "250000", Some("1G"), &mem[250_000..]),
    ];
    for (stream, off, len, want) in cases {
        let mut args = vec!["cat", "--stream", stream, "--offset", off, s(&out)];
        if let Some(l) = len {
            args.extend(["--length", l]);
        }
        let o = ok(&args, None);
        assert_eq!(o.stdout.len(), want.len(), "{args:?}");
        assert!(o.stdout == want, "{args:?}");
    }
    // At and past the end: nothing, successfully.
    let end = n.to_string();
    for off in [end.as_str(), "1G"] {
        let o = ok(&["cat", "--offset", off, "--length", "10", s(&out)], None);
        assert!(o.stdout.is_empty(), "offset {off}");
    }
    // A stream the archive does not have.
    let only_disk = d.path("d.hxz");
    ok(&["pack", "--disk", s(&img), "-o", s(&only_disk)], None);
    let line = fails(&["cat", "--stream", "memory", s(&only_disk)], None);
    assert!(line.contains("no memory stream"), "{line}");
}

#[test]
fn extract_reproduces_the_image_sparsely() {
    let d = tmp();
    // 16 MiB, almost all zeros.
    let mut img = vec![0u8; 16 << 20];
    fill(9, &mut img[..100_000]);
    fill(10, &mut img[(7 << 20) + 5..(7 << 20) + 70_000]);
    let n = img.len();
    fill(11, &mut img[n - 10..]);
    let mem = sample(500_000, 12);
    let imgp = d.file("sparse.img", &img);
    let memp = d.file("mem.img", &mem);
    let out = d.path("s.hxz");
    ok(
        &[
            "pack",
            "--disk",
            s(&imgp),
            "--memory",
            s(&memp),
            "-o",
            s(&out),
        ],
        None,
    );
    let archive_len = std::fs::metadata(&out).unwrap().len();
    assert!(archive_len < 1 << 20, "archive is {archive_len} bytes");

    let x = d.path("x.img");
    ok(&["extract", s(&out), "-o", s(&x)], None);
    let got = std::fs::read(&x).unwrap();
    assert!(got == img, "extracted disk differs");
    let m = std::fs::metadata(&x).unwrap();
    assert_eq!(m.len(), img.len() as u64);
    assert!(
        m.blocks() * 512 < 1 << 20,
        "extracted file uses {} bytes on disk for {} bytes of mostly zeros: not sparse",
        m.blocks() * 512,
        m.len()
    );
    let xm = d.path("x.mem");
    ok(
        &["extract", "--stream", "memory", s(&out), "-o", s(&xm)],
        None,
    );
    assert!(std::fs::read(&xm).unwrap() == mem);
    // Extracting over an existing file replaces it.
    ok(
        &["extract", "--stream", "memory", s(&out), "-o", s(&x)],
        None,
    );
    assert!(std::fs::read(&x).unwrap() == mem);
    // No temporary files are left behind.
    assert_eq!(
        d.names(),
        vec!["mem.img", "s.hxz", "sparse.img", "x.img", "x.mem"]
    );
}

/// Offset of the stored bytes of the first data block at or after `from` (disk stream).
fn data_block(archive: &Path, from: usize) -> (u64, u64) {
    let f = File::open(archive).unwrap();
    let rec = f.master().stream(SnapshotStream::Disk).unwrap();
    let mut n = 0u64;
    for p in 0..rec.pages.len() {
        for e in &f.index_page(SnapshotStream::Disk, p).unwrap().entries {
            if n as usize >= from && !e.is_zero() {
                return (n, e.stored_offset + e.stored_len as u64 / 2);
            }
            n += 1;
        }
    }
    panic!("no data block");
}

#[test]
fn verify_passes_and_names_a_corrupt_block() {
    let d = tmp();
    let data = sample(2 << 20, 13);
    let img = d.file("d.img", &data);
    let out = d.path("v.hxz");
    ok(&["pack", "--disk", s(&img), "-o", s(&out)], None);
    let o = ok(&["verify", s(&out)], None);
    let text = String::from_utf8(o.stdout).unwrap();
    assert!(text.starts_with("ok: 32 blocks in 1 index pages"), "{text}");
    let o = ok(&["verify", "--json", s(&out)], None);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(
        (&v["blocks"], &v["pages"], &v["bytes"]),
        (&Value::from(32), &Value::from(1), &Value::from(data.len()))
    );

    let (block, at) = data_block(&out, 6);
    let mut a = std::fs::read(&out).unwrap();
    a[at as usize] ^= 0x55;
    let bad = d.file("bad.hxz", &a);
    let line = fails(&["verify", s(&bad)], None);
    assert!(
        line.contains(&format!("block {block} of disk stream")),
        "{line}"
    );
    assert!(line.contains("bad.hxz"), "{line}");
    // cat and extract fail the same way and write no output file.
    let line = fails(&["cat", s(&bad)], None);
    assert!(line.contains(&format!("block {block} ")), "{line}");
    let x = d.path("x.img");
    let line = fails(&["extract", s(&bad), "-o", s(&x)], None);
    assert!(line.contains(&format!("block {block} ")), "{line}");
    assert!(!x.exists());
    // --json reports the failure as JSON too, and still exits non-zero.
    let o = run(&["verify", "--json", s(&bad)], None);
    assert!(!o.status.success());
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["ok"], false);
    assert!(v["error"]
        .as_str()
        .unwrap()
        .contains(&format!("block {block} ")));
}

#[test]
fn errors_are_one_line_and_never_panics() {
    let d = tmp();
    let data = sample(200_000, 14);
    let img = d.file("d.img", &data);
    let missing = d.path("missing.hxz");
    let junk = d.file("junk.bin", &sample(8192, 15));
    let out = d.path("o.hxz");

    for cmd in ["info", "cat", "verify"] {
        let line = fails(&[cmd, s(&missing)], None);
        assert!(line.contains("missing.hxz"), "{line}");
        let line = fails(&[cmd, s(&junk)], None);
        assert!(line.contains("not a hexz archive"), "{line}");
    }
    let line = fails(&["extract", s(&missing), "-o", s(&d.path("x"))], None);
    assert!(line.contains("missing.hxz"), "{line}");

    let line = fails(
        &[
            "pack",
            "--disk",
            s(&img),
            "-o",
            s(&out),
            "--compression",
            "zstd",
            "--level",
            "30",
        ],
        None,
    );
    assert!(line.contains("30"), "{line}");
    let line = fails(
        &["pack", "--disk", s(&img), "-o", s(&out), "--level", "5"],
        None,
    );
    assert!(line.contains("--level"), "{line}");
    let line = fails(
        &[
            "pack",
            "--disk",
            s(&img),
            "-o",
            s(&out),
            "--block-size",
            "1000",
        ],
        None,
    );
    assert!(line.contains("block size 1000"), "{line}");
    let line = fails(
        &["pack", "--disk", "-", "--memory", "-", "-o", s(&out)],
        None,
    );
    assert!(line.contains("standard input"), "{line}");
    let line = fails(&["pack", "-o", s(&out)], None);
    assert!(line.contains("--disk"), "{line}");
    let line = fails(
        &["pack", "--disk", s(&d.path("nope.img")), "-o", s(&out)],
        None,
    );
    assert!(line.contains("nope.img"), "{line}");
    assert!(!out.exists());
    assert_eq!(
        d.names(),
        vec!["d.img", "junk.bin"],
        "failed commands left files"
    );
}

#[test]
fn bad_size_suffix_is_a_one_line_hexz_error() {
    let d = tmp();
    let img = d.file("d.img", &sample(10_000, 16));
    let out = d.path("o.hxz");
    let line = fails(
        &[
            "pack",
            "--disk",
            s(&img),
            "-o",
            s(&out),
            "--block-size",
            "64Q",
        ],
        None,
    );
    assert!(line.contains("64Q"), "{line}");
    assert!(!out.exists());
}

#[test]
fn error_message_states_the_os_error_once() {
    let d = tmp();
    let line = fails(&["info", s(&d.path("missing.hxz"))], None);
    let n = line.matches("No such file or directory").count();
    assert_eq!(n, 1, "cause repeated: {line}");
}

#[test]
fn pack_into_a_missing_directory_fails_and_leaves_nothing() {
    let d = tmp();
    let img = d.file("d.img", &sample(100_000, 17));
    let target = d.path("no/such/dir/out.hxz");
    let line = fails(&["pack", "--disk", s(&img), "-o", s(&target)], None);
    assert!(line.contains("no/such/dir"), "{line}");
    assert!(!d.path("no").exists());
    assert_eq!(d.names(), vec!["d.img"]);
}

#[test]
fn killed_pack_leaves_no_archive_under_the_target_name() {
    let d = tmp();
    let target = d.path("live.hxz");
    let mut child = hexz()
        .args(["pack", "--disk", "-", "-o", s(&target)])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Feed 8 MiB: once write_all returns, hexz has consumed most of it, so it is midway
    // through packing (stdin is still open, so it cannot have finished).
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&sample(8 << 20, 18)).unwrap();
    stdin.flush().unwrap();
    let tmp_names: Vec<String> = d
        .names()
        .into_iter()
        .filter(|n| n.starts_with(".live.hxz.tmp"))
        .collect();
    // The output is an unnamed O_TMPFILE file until it is complete: no name is visible.
    assert_eq!(
        tmp_names.len(),
        0,
        "pack writes to an unnamed file: {:?}",
        d.names()
    );
    assert!(!target.exists(), "target exists before the pack finished");
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success());
    drop(stdin);
    assert!(!target.exists(), "a killed pack left {}", target.display());
    let listed = d.names();
    assert!(
        !listed.iter().any(|n| n == "live.hxz"),
        "directory holds {listed:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// A real ext4 image through the CLI.

fn mkfs_ext4() -> PathBuf {
    for c in ["mkfs.ext4", "/sbin/mkfs.ext4", "/usr/sbin/mkfs.ext4"] {
        if Command::new(c).arg("-V").output().is_ok() {
            return PathBuf::from(c);
        }
    }
    panic!(
        "mkfs.ext4 was not found (tried PATH, /sbin, /usr/sbin): install e2fsprogs \
         (e.g. `apt-get install e2fsprogs`) to run the ext4 CLI test"
    );
}

fn copy_some(src: &Path, dst: &Path, budget: &mut u64) {
    let Ok(rd) = std::fs::read_dir(src) else {
        return;
    };
    let mut v: Vec<PathBuf> = rd.filter_map(|e| e.ok()).map(|e| e.path()).collect();
    v.sort();
    for p in v {
        if *budget == 0 {
            return;
        }
        let Ok(m) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        let t = dst.join(p.file_name().unwrap());
        if m.is_dir() {
            std::fs::create_dir_all(&t).unwrap();
            copy_some(&p, &t, budget);
        } else if m.is_file() && m.len() <= *budget {
            if let Ok(b) = std::fs::read(&p) {
                std::fs::write(&t, &b).unwrap();
                *budget -= b.len() as u64;
            }
        }
    }
}

#[test]
fn ext4_image_pack_extract_round_trip() {
    let mkfs = mkfs_ext4();
    let d = tmp();
    let tree = d.path("tree");
    std::fs::create_dir_all(&tree).unwrap();
    let mut budget = 10u64 << 20;
    copy_some(Path::new("/usr/share/doc"), &tree, &mut budget);
    copy_some(Path::new("/usr/include"), &tree, &mut budget);
    assert!(budget < 9 << 20, "too few system files copied");
    let img = d.path("fs.img");
    let o = Command::new(&mkfs)
        .args(["-q", "-F", "-d"])
        .arg(&tree)
        .arg(&img)
        .arg("64M")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let raw = std::fs::read(&img).unwrap();
    assert_eq!(raw.len(), 64 << 20);

    for codec in ["lz4", "zstd"] {
        let out = d.path(&format!("fs-{codec}.hxz"));
        ok(
            &[
                "pack",
                "--disk",
                s(&img),
                "-o",
                s(&out),
                "--compression",
                codec,
            ],
            None,
        );
        let v = info_json(&out);
        assert_eq!(v["streams"][0]["zero_blocks"], zero_blocks(&raw, 64 << 10));
        assert!(v["archive_bytes"].as_u64().unwrap() < (32 << 20));
        let x = d.path(&format!("x-{codec}.img"));
        ok(&["extract", s(&out), "-o", s(&x)], None);
        assert!(
            std::fs::read(&x).unwrap() == raw,
            "{codec}: extracted image differs"
        );
        let m = std::fs::metadata(&x).unwrap();
        assert!(
            m.blocks() * 512 < m.len(),
            "{codec}: extracted image is not sparse"
        );
        let o = ok(&["verify", s(&out)], None);
        assert!(String::from_utf8_lossy(&o.stdout).starts_with("ok: 1024 blocks"));
    }
}

#[test]
fn no_dedup_stores_repeated_blocks_again() {
    let d = tmp();
    // Four copies of the same 256 KiB (four 64 KiB blocks): 12 of 16 blocks repeat.
    let mut unit = vec![0u8; 256 << 10];
    fill(9, &mut unit);
    let data: Vec<u8> = unit.iter().copied().cycle().take(4 * unit.len()).collect();
    let img = d.file("r.img", &data);
    let pack = |name: &str, extra: &[&str]| -> Value {
        let out = d.path(name);
        let mut args = vec!["pack", "--disk", s(&img), "-o", s(&out), "--json"];
        args.extend_from_slice(extra);
        let o = ok(&args, None);
        let v: Value = serde_json::from_slice(&o.stdout).expect("pack --json is JSON");
        let back = ok(&["cat", s(&out)], None);
        assert!(back.stdout == data, "{name} reads back");
        v
    };
    let dedup = pack("dedup.hxz", &[]);
    let plain = pack("plain.hxz", &["--no-dedup"]);
    assert_eq!(dedup["disk"]["dedup_blocks"], 12);
    assert_eq!(plain["disk"]["dedup_blocks"], 0);
    let (sd, sp) = (
        dedup["disk"]["stored_bytes"].as_u64().unwrap(),
        plain["disk"]["stored_bytes"].as_u64().unwrap(),
    );
    assert_eq!(
        sp,
        4 * sd,
        "without dedup every copy is stored: {sp} vs {sd}"
    );
}
