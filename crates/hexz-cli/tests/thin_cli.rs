//! Thin snapshots of a real ext4 file system, through the `hexz` binary.
//!
//! Version 1 is an ext4 image built with `mkfs.ext4 -d` from copies of system files
//! (/usr/include, /usr/share/doc). Version 2 has files added, removed, edited and appended,
//! made two ways: `mkfs.ext4 -d` again from the modified tree (every file laid out afresh:
//! later files move, which only content-defined chunking follows), and `debugfs -w` on a
//! copy of v1.img (unchanged files stay where they were: "the same disk, later").
//!
//! Needs `mkfs.ext4`, `debugfs` and `e2fsck` (package e2fsprogs); fails saying so if they
//! are missing.

use hexz_core::{File, SnapshotStream};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

const HEXZ: &str = env!("CARGO_BIN_EXE_hexz");
/// Bytes of real files copied into version 1.
const STAGE_BUDGET: u64 = 20 << 20;
const BS: usize = 64 * 1024;

fn tool(name: &str) -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from));
    dirs.into_iter()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "{name} not found: these tests build real ext4 images and need e2fsprogs \
                 (apt-get install e2fsprogs, or run scripts/deps.sh)"
            )
        })
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn ok(cmd: &mut Command) -> Output {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn hexz(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Command {
    let mut c = Command::new(HEXZ);
    for a in args {
        c.arg(a);
    }
    c
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

// ---------------------------------------------------------------------------------------
// Building the two versions
// ---------------------------------------------------------------------------------------

/// splitmix64.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// Text-like bytes that never repeat (new content for added and appended files).
fn text(len: usize, seed: u64) -> Vec<u8> {
    let mut r = Rng(seed);
    let mut v = Vec::with_capacity(len + 16);
    while v.len() < len {
        let n = 2 + r.next() % 9;
        for _ in 0..n {
            v.push(b'a' + (r.next() % 26) as u8);
        }
        v.push(if r.next() % 12 == 0 { b'\n' } else { b' ' });
    }
    v.truncate(len);
    v
}

fn safe_name(n: &str) -> bool {
    !n.is_empty()
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._+-".contains(&b))
}

/// Copies regular files (sorted walk, plain names only, at most 1 MiB each) from
/// `src/rel` to `dst/rel` until `budget` bytes are copied, and lists their `rel` paths.
fn copy_tree(src: &Path, dst: &Path, rel: &Path, budget: &mut u64, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(src.join(rel)) else {
        return;
    };
    let mut names: Vec<_> = rd
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| safe_name(n))
        .collect();
    names.sort();
    for n in names {
        if *budget == 0 {
            return;
        }
        let r = rel.join(&n);
        let p = src.join(&r);
        let Ok(m) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if m.is_dir() {
            copy_tree(src, dst, &r, budget, out);
        } else if m.is_file() && m.len() <= (1 << 20) && m.len() <= *budget {
            let Ok(bytes) = std::fs::read(&p) else {
                continue;
            };
            std::fs::create_dir_all(dst.join(&r).parent().unwrap()).unwrap();
            std::fs::write(dst.join(&r), &bytes).unwrap();
            *budget -= bytes.len() as u64;
            out.push(r);
        }
    }
}

struct Fixture {
    dir: PathBuf,
    /// v1.img, v2.img (mkfs afresh), v2d.img (debugfs in place).
    v1: PathBuf,
    v2: PathBuf,
    v2d: PathBuf,
}

fn mkfs(dir: &Path, img: &Path) {
    let _ = std::fs::remove_file(img);
    ok(Command::new(tool("mkfs.ext4"))
        .args(["-q", "-F", "-E", "root_owner=0:0", "-d"])
        .arg(dir)
        .arg(img)
        .arg("64M")
        .env("E2FSPROGS_FAKE_TIME", "1700000000"));
}

fn build() -> Fixture {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("thin_cli");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (s1, s2) = (dir.join("stage1"), dir.join("stage2"));
    let mut budget = STAGE_BUDGET;
    let mut files = Vec::new();
    for (src, rel) in [("/usr", "include"), ("/usr/share", "doc")] {
        copy_tree(Path::new(src), &s1, Path::new(rel), &mut budget, &mut files);
    }
    let copied = STAGE_BUDGET - budget;
    assert!(
        copied >= 4 << 20 && files.len() >= 200,
        "found only {copied} bytes in {} files under /usr/include and /usr/share/doc; these \
         tests need real files to put in the ext4 image (install linux-libc-dev / libc6-dev)",
        files.len()
    );
    // Version 2 of the tree: remove every 211th file, edit every 199th in place, append to
    // every 197th (about 1.5% of the files in all), add a directory of 20 new files.
    let cp = Command::new("cp")
        .arg("-a")
        .arg(&s1)
        .arg(&s2)
        .status()
        .unwrap();
    assert!(cp.success());
    let mut removed = Vec::new();
    let mut rewritten = Vec::new();
    for (i, f) in files.iter().enumerate() {
        let p = s2.join(f);
        if i % 211 == 5 {
            std::fs::remove_file(&p).unwrap();
            removed.push(f.clone());
        } else if i % 199 == 7 {
            let mut b = std::fs::read(&p).unwrap();
            if b.len() >= 32 {
                let at = b.len() / 2 - 8;
                b[at..at + 16].copy_from_slice(b"EDITED-BY-HEXZ-T");
                std::fs::write(&p, b).unwrap();
                rewritten.push(f.clone());
            }
        } else if i % 197 == 11 {
            let mut b = std::fs::read(&p).unwrap();
            b.extend_from_slice(&text(3000, i as u64));
            std::fs::write(&p, b).unwrap();
            rewritten.push(f.clone());
        }
    }
    std::fs::create_dir(s2.join("added")).unwrap();
    let mut added = Vec::new();
    for i in 0..20u64 {
        let n = format!("added/new-{i:02}.txt");
        std::fs::write(
            s2.join(&n),
            text(5000 + (i as usize * 1999) % 50_000, 1000 + i),
        )
        .unwrap();
        added.push(PathBuf::from(n));
    }

    let (v1, v2, v2d) = (dir.join("v1.img"), dir.join("v2.img"), dir.join("v2d.img"));
    mkfs(&s1, &v1);
    mkfs(&s2, &v2);

    // The same changes made in place on a copy of v1.img.
    std::fs::copy(&v1, &v2d).unwrap();
    let mut cmds = String::new();
    for f in &removed {
        cmds += &format!("rm /{}\n", f.display());
    }
    for f in &rewritten {
        cmds += &format!("rm /{}\n", f.display());
        cmds += &format!("write {} /{}\n", s2.join(f).display(), f.display());
    }
    cmds += "mkdir /added\n";
    for f in &added {
        cmds += &format!("write {} /{}\n", s2.join(f).display(), f.display());
    }
    std::fs::write(dir.join("debugfs.cmds"), cmds).unwrap();
    let out = ok(Command::new(tool("debugfs"))
        .arg("-w")
        .arg("-f")
        .arg(dir.join("debugfs.cmds"))
        .arg(&v2d));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !err.contains("not found") && !err.contains("rror"),
        "debugfs: {err}"
    );
    ok(Command::new(tool("e2fsck")).arg("-fn").arg(&v2d));
    ok(Command::new(tool("e2fsck")).arg("-fn").arg(&v2));
    std::fs::remove_dir_all(&s1).unwrap();
    std::fs::remove_dir_all(&s2).unwrap();
    Fixture { dir, v1, v2, v2d }
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(build)
}

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
}

fn size(p: &Path) -> u64 {
    std::fs::metadata(p).unwrap().len()
}

/// Packs `img` (optionally thin over `base`) with extra `args`; returns pack's JSON.
fn pack(img: &Path, out: &Path, base: Option<&Path>, args: &[&str]) -> Value {
    let mut c = hexz(&[&"pack", &"--disk", &img, &"-o", &out, &"--json"]);
    c.args(args);
    if let Some(b) = base {
        c.arg("--base").arg(b);
    }
    json(&ok(&mut c))
}

/// Logical bytes of `f`'s blocks that are not all zero (what the chain supplies).
fn nonzero_bytes(p: &Path) -> u64 {
    let f = File::open(p).unwrap();
    let rec = f.master().stream(SnapshotStream::Disk).unwrap();
    let mut n = 0;
    for page in 0..rec.pages.len() {
        for e in &f.index_page(SnapshotStream::Disk, page).unwrap().entries {
            if !e.is_zero() {
                n += e.logical_len as u64;
            }
        }
    }
    n
}

fn ranges_of(v: &Value) -> Vec<(u64, u64)> {
    let s = &v["streams"][0];
    assert_eq!(s["stream"], "disk");
    s["ranges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["offset"].as_u64().unwrap(), r["length"].as_u64().unwrap()))
        .collect()
}

/// The checks common to every thin child: byte-exact `cat` and `extract`, `info` chain,
/// `verify`, `flatten`.
fn check_child(tag: &str, v1hxz: &Path, child: &Path, want: &[u8], mostly_parent: bool) {
    let dir = child.parent().unwrap();
    // cat and extract give v2.img byte for byte.
    let out = ok(&mut hexz(&[&"cat", &child]));
    assert!(out.stdout == want, "{tag}: cat differs from the image");
    let ext = dir.join(format!("{tag}.extracted"));
    ok(&mut hexz(&[&"extract", &child, &"-o", &ext]));
    assert!(read(&ext) == want, "{tag}: extract differs from the image");
    std::fs::remove_file(&ext).unwrap();
    // A range through the chain.
    let out = ok(&mut hexz(&[
        &"cat",
        &child,
        &"--offset",
        &"1000000",
        &"--length",
        &"3000000",
    ]));
    assert!(out.stdout == want[1_000_000..4_000_000], "{tag}: cat range");

    // info: the chain, and who supplies what.
    let info = json(&ok(&mut hexz(&[&"info", &child, &"--json"])));
    let parent_info = json(&ok(&mut hexz(&[&"info", &v1hxz, &"--json"])));
    assert!(
        parent_info.get("chain").is_none(),
        "{tag}: standalone has a chain"
    );
    let flags = info["flags"].as_array().unwrap();
    assert!(flags.iter().any(|f| f == "thin"), "{tag}: flags {flags:?}");
    let chain = info["chain"].as_array().expect("chain");
    assert_eq!(chain.len(), 2, "{tag}: {chain:?}");
    assert_eq!(chain[0]["depth"], 0);
    assert_eq!(chain[1]["depth"], 1);
    assert_eq!(chain[0]["archive_id"], info["archive_id"]);
    assert_eq!(chain[1]["archive_id"], parent_info["archive_id"]);
    assert!(chain[1]["location"]
        .as_str()
        .unwrap()
        .ends_with(v1hxz.file_name().unwrap().to_str().unwrap()));
    let sup: Vec<u64> = chain
        .iter()
        .map(|c| c["supplied_bytes"].as_u64().unwrap())
        .collect();
    assert!(sup[0] > 0 && sup[1] > 0, "{tag}: supplied {sup:?}");
    assert_eq!(
        sup[0] + sup[1],
        nonzero_bytes(child),
        "{tag}: supplied {sup:?}"
    );
    assert!(
        !mostly_parent || sup[1] > sup[0],
        "{tag}: the parent should supply most content: {sup:?}"
    );
    let text = String::from_utf8(ok(&mut hexz(&[&"info", &child])).stdout).unwrap();
    assert!(text.contains("ancestor 1"), "{tag}: {text}");

    // verify checks both archives.
    let v = json(&ok(&mut hexz(&[&"verify", &child, &"--json"])));
    assert_eq!(v["ok"], true);
    assert_eq!(v["archives"], 2, "{tag}: {v}");
    let t = String::from_utf8(ok(&mut hexz(&[&"verify", &child])).stdout).unwrap();
    assert!(t.contains("across 2 archives"), "{tag}: {t}");

    // flatten: standalone, same bytes, identical to the child by diff.
    let flat = dir.join(format!("{tag}.flat.hxz"));
    ok(&mut hexz(&[&"flatten", &child, &"-o", &flat]));
    let fi = json(&ok(&mut hexz(&[&"info", &flat, &"--json"])));
    assert!(fi.get("chain").is_none());
    assert!(!fi["flags"].as_array().unwrap().iter().any(|f| f == "thin"));
    assert_eq!(fi["chunking"], info["chunking"]);
    let out = ok(&mut hexz(&[&"cat", &flat]));
    assert!(out.stdout == want, "{tag}: flattened differs");
    let d = json(&ok(&mut hexz(&[&"diff", &child, &flat, &"--json"])));
    assert_eq!(d["identical"], true, "{tag}: {d}");
    let st = run(&mut hexz(&[&"diff", &"--exit-code", &child, &flat]));
    assert_eq!(st.status.code(), Some(0));
    std::fs::remove_file(&flat).unwrap();
}

/// Block-granular differing ranges of two images for aligned 64 KiB blocks.
fn block_ranges(a: &[u8], b: &[u8]) -> Vec<(u64, u64)> {
    assert_eq!(a.len(), b.len());
    let mut v: Vec<(u64, u64)> = Vec::new();
    for (i, (x, y)) in a.chunks(BS).zip(b.chunks(BS)).enumerate() {
        if x != y {
            let off = (i * BS) as u64;
            match v.last_mut() {
                Some(l) if l.0 + l.1 == off => l.1 += x.len() as u64,
                _ => v.push((off, x.len() as u64)),
            }
        }
    }
    v
}

// ---------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------

#[test]
fn ext4_fixed_block_thin_child() {
    let fx = fixture();
    let d = fx.dir.join("fixed");
    std::fs::create_dir_all(&d).unwrap();
    let (p1, p2) = (d.join("v1.hxz"), d.join("v2.hxz"));
    pack(&fx.v1, &p1, None, &["--compression", "zstd"]);
    let st = pack(&fx.v2, &p2, Some(&p1), &["--compression", "zstd"]);
    assert!(st["disk"]["parent_blocks"].as_u64().unwrap() > 0, "{st}");
    let (v1, v2) = (read(&fx.v1), read(&fx.v2));
    check_child("fixed", &p1, &p2, &v2, false);
    eprintln!(
        "ext4 mkfs-afresh, fixed: v1 {} bytes, thin v2 {} bytes",
        size(&p1),
        size(&p2)
    );
    // v2 laid out afresh: files after the first removal moved, fixed blocks do not follow.
    // The child is still no bigger than a standalone v2.
    let full = d.join("v2-full.hxz");
    pack(&fx.v2, &full, None, &["--compression", "zstd"]);
    assert!(size(&p2) <= size(&full) + 4096);

    // diff: exactly the 64 KiB blocks whose bytes differ.
    let out = run(&mut hexz(&[&"diff", &p1, &p2, &"--json", &"--exit-code"]));
    assert_eq!(
        out.status.code(),
        Some(1),
        "diff --exit-code of differing archives"
    );
    let dj = json(&out);
    assert_eq!(dj["identical"], false);
    let want = block_ranges(&v1, &v2);
    assert!(!want.is_empty());
    assert_eq!(ranges_of(&dj), want);
    assert_eq!(
        dj["streams"][0]["differing_bytes"].as_u64().unwrap(),
        want.iter().map(|r| r.1).sum::<u64>()
    );
    assert_eq!(dj["decoded_bytes"], 0);
    assert!(dj["unique_bytes_b"].as_u64().unwrap() > 0);
    let text = String::from_utf8(ok(&mut hexz(&[&"diff", &p1, &p2])).stdout).unwrap();
    assert!(
        text.contains(&format!("in {} ranges", want.len())),
        "{text}"
    );
}

#[test]
fn ext4_cdc_thin_child() {
    let fx = fixture();
    let d = fx.dir.join("cdc");
    std::fs::create_dir_all(&d).unwrap();
    let (p1, p2) = (d.join("v1.hxz"), d.join("v2.hxz"));
    let z = ["--cdc", "--compression", "zstd"];
    pack(&fx.v1, &p1, None, &z);
    let st = pack(&fx.v2, &p2, Some(&p1), &z);
    let (v1, v2) = (read(&fx.v1), read(&fx.v2));
    check_child("cdc", &p1, &p2, &v2, false);
    let pb = st["disk"]["parent_blocks"].as_u64().unwrap();
    let blocks = st["disk"]["blocks"].as_u64().unwrap();
    let zero = st["disk"]["zero_blocks"].as_u64().unwrap();
    // The same with fixed blocks, for comparison.
    let (f1, f2) = (d.join("fixed-v1.hxz"), d.join("fixed-v2.hxz"));
    pack(&fx.v1, &f1, None, &["--compression", "zstd"]);
    pack(&fx.v2, &f2, Some(&f1), &["--compression", "zstd"]);
    eprintln!(
        "ext4 mkfs-afresh, zstd: cdc v1 {} bytes, thin v2 {} bytes ({pb} of {} non-zero \
         chunks from v1); fixed v1 {}, thin v2 {}",
        size(&p1),
        size(&p2),
        blocks - zero,
        size(&f1),
        size(&f2)
    );
    // v2 was laid out afresh, so files after the first removed one moved: content-defined
    // chunks follow them, fixed blocks do not. (Directory blocks and inode tables change
    // all over the image as inode numbers shift, so even the CDC child is not tiny.)
    assert!(
        size(&p2) * 10 < size(&p1) * 6,
        "cdc child {} bytes, parent {}",
        size(&p2),
        size(&p1)
    );
    assert!(
        size(&p2) * 10 < size(&f2) * 7,
        "cdc child {} bytes, fixed-block child {}",
        size(&p2),
        size(&f2)
    );
    assert!(pb * 2 > blocks - zero, "{st}");

    // diff between the CDC archives: every differing byte is inside a reported range and
    // every range holds a difference.
    let dj = json(&ok(&mut hexz(&[&"diff", &p1, &p2, &"--json"])));
    assert_eq!(dj["identical"], false);
    let ranges = ranges_of(&dj);
    assert!(!ranges.is_empty());
    let mut covered = vec![false; v1.len()];
    for &(o, l) in &ranges {
        let (o, l) = (o as usize, l as usize);
        assert!(o + l <= v1.len());
        assert!(
            v1[o..o + l] != v2[o..o + l],
            "range {o}+{l} holds no difference"
        );
        covered[o..o + l].iter_mut().for_each(|c| *c = true);
    }
    let missed = (0..v1.len()).find(|&i| v1[i] != v2[i] && !covered[i]);
    assert_eq!(missed, None, "differing byte outside every range");

    // The fixed-block archive of v2 against the CDC one: same content.
    let fixed = d.join("v2-fixed.hxz");
    pack(&fx.v2, &fixed, None, &[]);
    let dj = json(&ok(&mut hexz(&[&"diff", &fixed, &p2, &"--json"])));
    assert_eq!(dj["identical"], true, "{dj}");
    assert!(dj["decoded_bytes"].as_u64().unwrap() > 0);
}

/// The realistic "same disk, later" case: unchanged files stay in place, so both the fixed
/// and the CDC child store little more than the changed files.
#[test]
fn ext4_edited_in_place_thin_children_are_small() {
    let fx = fixture();
    let d = fx.dir.join("inplace");
    std::fs::create_dir_all(&d).unwrap();
    let v2 = read(&fx.v2d);
    for (tag, args) in [("inplace-fixed", vec![]), ("inplace-cdc", vec!["--cdc"])] {
        let p1 = d.join(format!("{tag}-v1.hxz"));
        let p2 = d.join(format!("{tag}-v2.hxz"));
        pack(&fx.v1, &p1, None, &args);
        let st = pack(&fx.v2d, &p2, Some(&p1), &args);
        eprintln!(
            "ext4 in place, {tag}: v1 {} bytes, thin v2 {} bytes ({st})",
            size(&p1),
            size(&p2)
        );
        assert!(
            size(&p2) * 2 < size(&p1),
            "{tag}: child {} bytes, parent {}",
            size(&p2),
            size(&p1)
        );
        check_child(tag, &p1, &p2, &v2, true);
    }
}

#[test]
fn ext4_child_with_missing_or_replaced_parent_fails_clearly() {
    let fx = fixture();
    let d = fx.dir.join("missing");
    std::fs::create_dir_all(&d).unwrap();
    let (p1, p2) = (d.join("v1.hxz"), d.join("v2.hxz"));
    pack(&fx.v1, &p1, None, &[]);
    pack(&fx.v2d, &p2, Some(&p1), &[]);
    let id = json(&ok(&mut hexz(&[&"info", &p1, &"--json"])))["archive_id"]
        .as_str()
        .unwrap()
        .to_string();

    // Replaced by another archive.
    let other = d.join("other.hxz");
    pack(&fx.v2d, &other, None, &[]);
    std::fs::rename(&p1, d.join("v1.saved")).unwrap();
    std::fs::rename(&other, &p1).unwrap();
    for args in [vec!["cat"], vec!["verify"], vec!["info"]] {
        let mut c = hexz(&[]);
        c.args(&args).arg(&p2);
        let out = run(&mut c);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(err.contains(&id), "{args:?}: {err}");
        assert!(err.contains("is not the parent"), "{args:?}: {err}");
    }

    // Missing.
    std::fs::remove_file(&p1).unwrap();
    let out = run(&mut hexz(&[&"cat", &p2]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("v1.hxz") && err.contains(&id), "{err}");
    assert!(out.stdout.is_empty());

    // Back in place: fine again.
    std::fs::rename(d.join("v1.saved"), &p1).unwrap();
    let out = ok(&mut hexz(&[&"cat", &p2, &"--length", &"1M"]));
    assert!(out.stdout == read(&fx.v2d)[..1 << 20]);
}
