//! Tree archives through the `hexz` binary: pack DIR / --from-tar, ls, cat, extract, info,
//! diff; real trees (/usr/share/doc, /usr/include) round-tripped and compared with `diff -r`
//! and a `find` listing of type, mode, owner, size, mtime and link target.

use serde_json::Value;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn hexz() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hexz"))
}

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

fn ok(args: &[&str]) -> Output {
    let o = run(args, None);
    assert!(
        o.status.success(),
        "hexz {args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

fn fails(args: &[&str]) -> String {
    let o = run(args, None);
    assert!(!o.status.success(), "hexz {args:?} should fail");
    let e = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(e.trim_end().lines().count(), 1, "one-line error: {e}");
    e
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// On the real disk (not tmpfs).
fn tmp() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("hexz-tree-cli-")
        .tempdir_in("/var/tmp")
        .unwrap()
}

/// `find` listing: type, mode, owner, size, mtime (ns), link target, path; sorted. Directory
/// sizes are left out (they depend on the file system's allocation, not on the content).
fn find_listing(root: &Path) -> Vec<String> {
    let o = Command::new("find")
        .arg(root)
        .args(["-mindepth", "1", "-printf", "%y %m %U %G %s %T@ %l|%P\\n"])
        .output()
        .unwrap();
    assert!(o.status.success());
    let mut v: Vec<String> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| {
            if l.starts_with("d ") {
                let f: Vec<&str> = l.splitn(6, ' ').collect();
                format!("{} {} {} {} - {}", f[0], f[1], f[2], f[3], f[5])
            } else {
                l.to_string()
            }
        })
        .collect();
    v.sort();
    v
}

fn diff_r(a: &Path, b: &Path) {
    let o = Command::new("diff")
        .args(["-r", "--no-dereference", s(a), s(b)])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "diff -r {a:?} {b:?}: {}",
        String::from_utf8_lossy(&o.stdout)
    );
}

#[test]
fn real_trees_round_trip() {
    for src in ["/usr/share/doc", "/usr/include"] {
        let src = Path::new(src);
        if !src.is_dir() {
            continue;
        }
        let d = tmp();
        let out = d.path().join("t.hxz");
        let dst = d.path().join("x");
        let o = ok(&[
            "pack",
            s(src),
            "-o",
            s(&out),
            "--compression",
            "zstd",
            "--json",
        ]);
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["warnings"], 0, "{v}");
        ok(&["extract", s(&out), "-o", s(&dst)]);
        diff_r(src, &dst);
        assert_eq!(find_listing(src), find_listing(&dst), "{src:?}");
        let info: Value = serde_json::from_slice(&ok(&["info", s(&out), "--json"]).stdout).unwrap();
        let files = find_listing(src)
            .iter()
            .filter(|l| l.starts_with("f "))
            .count();
        assert_eq!(info["tree"]["files"], files as u64, "{info}");
    }
}

fn small_tree(root: &Path) {
    std::fs::create_dir_all(root.join("docs/empty")).unwrap();
    std::fs::write(root.join("docs/a.txt"), b"alpha\n").unwrap();
    std::fs::write(root.join("docs/b c.txt"), b"bravo charlie\n").unwrap();
    std::fs::write(
        root.join("top"),
        (0..100_000u32).map(|i| i as u8).collect::<Vec<_>>(),
    )
    .unwrap();
    std::fs::hard_link(root.join("docs/a.txt"), root.join("hard")).unwrap();
    std::os::unix::fs::symlink("docs/a.txt", root.join("sym")).unwrap();
}

#[test]
fn ls_cat_info_extract_diff() {
    let d = tmp();
    let src = d.path().join("src");
    small_tree(&src);
    let out = d.path().join("t.hxz");
    ok(&["pack", s(&src), "-o", s(&out)]);

    let ls = ok(&["ls", s(&out)]);
    assert_eq!(
        String::from_utf8_lossy(&ls.stdout),
        "docs\nhard\nsym\ntop\n"
    );
    let ls = ok(&["ls", s(&out), "docs", "-l"]);
    let text = String::from_utf8_lossy(&ls.stdout).into_owned();
    assert!(
        text.contains("-rw-r--r--") && text.contains("b c.txt"),
        "{text}"
    );
    assert!(text
        .lines()
        .any(|l| l.starts_with("drwx") && l.ends_with(" empty")));
    let ls = ok(&["ls", s(&out), "-l"]);
    assert!(String::from_utf8_lossy(&ls.stdout).contains("sym -> docs/a.txt"));
    let j: Value = serde_json::from_slice(&ok(&["ls", s(&out), "-R", "--json"]).stdout).unwrap();
    let paths: Vec<&str> = j
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        [
            "docs",
            "hard",
            "sym",
            "top",
            "docs/a.txt",
            "docs/b c.txt",
            "docs/empty"
        ]
    );
    // Hard links point at the path that comes first in table order.
    assert_eq!(j[4]["hardlink"], "hard", "{j}");

    assert_eq!(
        ok(&["cat", s(&out), "docs/b c.txt"]).stdout,
        b"bravo charlie\n"
    );
    assert_eq!(
        ok(&["cat", s(&out), "/top", "--offset", "1000", "--length", "3"]).stdout,
        [232u8, 233, 234]
    );
    assert_eq!(ok(&["cat", s(&out), "hard"]).stdout, b"alpha\n");
    let e = fails(&["cat", s(&out), "docs"]);
    assert!(e.contains("docs is a dir, not a regular file"), "{e}");
    let e = fails(&["cat", s(&out), "nope"]);
    assert!(e.contains("no such file"), "{e}");
    let e = fails(&["ls", s(&out), "nope"]);
    assert!(e.contains("no such file or directory"), "{e}");

    let info: Value = serde_json::from_slice(&ok(&["info", s(&out), "--json"]).stdout).unwrap();
    assert_eq!(info["format_version"], "1.2");
    let t = &info["tree"];
    assert_eq!(
        (t["files"].as_u64(), t["dirs"].as_u64()),
        (Some(4), Some(3))
    );
    assert_eq!(t["symlinks"], 1);
    assert_eq!(t["file_bytes"], 6 + 14 + 100_000);
    let text = String::from_utf8_lossy(&ok(&["info", s(&out)]).stdout).into_owned();
    assert!(
        text.contains("4 files, 3 directories, 1 symlinks"),
        "{text}"
    );

    // verify walks the file table; flatten keeps it. (Packing a tree to s3:// is tested
    // against a real S3 server in remote_cli.rs.)
    let v = String::from_utf8_lossy(&ok(&["verify", s(&out)]).stdout).into_owned();
    assert!(v.contains(", 8 file table entries"), "{v}");
    let flat = d.path().join("flat.hxz");
    ok(&["flatten", s(&out), "-o", s(&flat)]);
    assert_eq!(ok(&["cat", s(&flat), "hard"]).stdout, b"alpha\n");
    assert_eq!(ok(&["ls", s(&flat)]).stdout, b"docs\nhard\nsym\ntop\n");

    // Extract refuses to overwrite; --force does; one subtree only.
    let dst = d.path().join("dst");
    ok(&["extract", s(&out), "-o", s(&dst)]);
    diff_r(&src, &dst);
    let e = fails(&["extract", s(&out), "-o", s(&dst)]);
    assert!(e.contains("already exists (use --force"), "{e}");
    ok(&["extract", s(&out), "-o", s(&dst), "--force"]);
    let sub = d.path().join("sub");
    ok(&["extract", s(&out), "-o", s(&sub), "docs"]);
    assert_eq!(std::fs::read(sub.join("docs/a.txt")).unwrap(), b"alpha\n");
    assert!(!sub.join("top").exists());
    // The disk stream of a tree archive is still there for stream tools.
    let raw = ok(&["cat", s(&out), "--stream", "disk"]).stdout;
    assert!(raw.windows(6).any(|w| w == b"alpha\n"));

    // diff: one changed, one added, one removed.
    std::fs::write(src.join("docs/a.txt"), b"ALPHA\n").unwrap();
    std::fs::remove_file(src.join("top")).unwrap();
    std::fs::write(src.join("new"), b"n").unwrap();
    let out2 = d.path().join("t2.hxz");
    ok(&["pack", s(&src), "-o", s(&out2)]);
    let o = run(&["diff", s(&out), s(&out2), "--exit-code"], None);
    assert_eq!(o.status.code(), Some(1));
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(text.contains("+ new") && text.contains("- top"), "{text}");
    assert!(
        text.contains("M docs/a.txt") && text.contains("M hard"),
        "{text}"
    );
    assert!(text.contains("1 added, 1 removed, 2 changed"), "{text}");
    let o = run(&["diff", s(&out2), s(&out2), "--exit-code"], None);
    assert_eq!(o.status.code(), Some(0));

    // Stream archives keep their cat; tree commands say what is wrong.
    let img = d.path().join("img");
    std::fs::write(&img, b"stream bytes").unwrap();
    let sa = d.path().join("s.hxz");
    ok(&["pack", "--disk", s(&img), "-o", s(&sa)]);
    assert_eq!(ok(&["cat", s(&sa)]).stdout, b"stream bytes");
    let e = fails(&["ls", s(&sa)]);
    assert!(e.contains("byte streams only, not a file tree"), "{e}");
}

#[test]
fn from_tar_matches_tar_x() {
    let d = tmp();
    let src = d.path().join("src");
    small_tree(&src);
    std::fs::write(src.join("docs/ünï cødé\nname"), b"odd").unwrap();
    let tarball = d.path().join("t.tar");
    let o = Command::new("tar")
        .args(["--format=pax", "-cf", s(&tarball), "-C", s(&src), "."])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let by_tar = d.path().join("by-tar");
    std::fs::create_dir(&by_tar).unwrap();
    let o = Command::new("tar")
        .args(["-xpf", s(&tarball), "-C", s(&by_tar)])
        .output()
        .unwrap();
    assert!(o.status.success());

    let out = d.path().join("t.hxz");
    ok(&["pack", "--from-tar", s(&tarball), "-o", s(&out)]);
    let by_hexz = d.path().join("by-hexz");
    ok(&["extract", s(&out), "-o", s(&by_hexz)]);
    diff_r(&by_tar, &by_hexz);
    assert_eq!(find_listing(&by_tar), find_listing(&by_hexz));
    let j: Value =
        serde_json::from_slice(&ok(&["ls", s(&out), "docs/a.txt", "--json"]).stdout).unwrap();
    assert_eq!(j[0]["hardlink"], "hard", "{j}");

    // From standard input, same archive content.
    let out2 = d.path().join("t2.hxz");
    let bytes = std::fs::read(&tarball).unwrap();
    let o = run(&["pack", "--from-tar", "-", "-o", s(&out2)], Some(&bytes));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = run(&["diff", s(&out), s(&out2), "--exit-code"], None);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );

    // A tar with '..' is refused at pack time, naming the member.
    let evil = d.path().join("evil.tar");
    let mut b = tar_member(b"../escape", b"x");
    b.extend_from_slice(&[0u8; 1024]);
    std::fs::write(&evil, b).unwrap();
    let e = fails(&[
        "pack",
        "--from-tar",
        s(&evil),
        "-o",
        s(&d.path().join("e.hxz")),
    ]);
    assert!(e.contains("tar member '../escape'"), "{e}");
}

/// One ustar member (header + data padded to 512 bytes), built by hand.
fn tar_member(name: &[u8], data: &[u8]) -> Vec<u8> {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name);
    h[100..108].copy_from_slice(b"0000644\0");
    h[108..116].copy_from_slice(b"0000000\0");
    h[116..124].copy_from_slice(b"0000000\0");
    h[124..136].copy_from_slice(format!("{:011o}\0", data.len()).as_bytes());
    h[136..148].copy_from_slice(b"00000000000\0");
    h[156] = b'0';
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| b as u32).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    let mut v = h.to_vec();
    v.extend_from_slice(data);
    v.resize(512 + data.len().div_ceil(512) * 512, 0);
    v
}
