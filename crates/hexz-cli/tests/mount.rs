//! `hexz mount`, `unmount`, `serve --nbd` and `commit` against real tools: a real ext4
//! image built with `mkfs.ext4 -d`, mounted with FUSE and checked with `e2fsck`, `debugfs`,
//! `qemu-img`, `qemu-io` and `fio`; NBD on 127.0.0.1 with a free port.
//!
//! Every mount is unmounted by a guard even when a test fails; every server is killed by
//! its guard. Needs root, /dev/fuse, e2fsprogs, qemu-utils and fio (scripts/deps.sh).
#![cfg(feature = "mount")]

mod common;

use common::{is_mounted, s, tmp, Dir, MountGuard};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const HEXZ: &str = env!("CARGO_BIN_EXE_hexz");

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
                "{name} not found: install e2fsprogs, qemu-utils, fio and fuse3 (scripts/deps.sh)"
            )
        })
}

fn ok(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn fails(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(!out.status.success(), "{cmd:?} should have failed");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn hexz() -> Command {
    let mut c = Command::new(HEXZ);
    c.env_remove("HEXZ_PASSWORD");
    c
}

/// Kills a child process (server) on drop.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn mount(archive: &Path, mp: &Path, extra: &[&str]) -> MountGuard {
    std::fs::create_dir_all(mp).unwrap();
    let g = MountGuard(mp.to_path_buf());
    ok(hexz().arg("mount").arg(archive).arg(mp).args(extra));
    assert!(
        is_mounted(mp),
        "hexz mount returned but {} is not mounted",
        mp.display()
    );
    g
}

fn unmount(mp: &Path) {
    ok(hexz().arg("unmount").arg(mp));
    assert!(
        !is_mounted(mp),
        "{} still mounted after hexz unmount",
        mp.display()
    );
}

/// No process still runs hexz mount/serve on `path` (the daemon exited).
fn no_daemon_for(path: &Path) {
    let needle = s(path).to_string();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(HEXZ) && cmd.contains(&needle) && cmd.contains("--daemon-child") {
                let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
                assert!(
                    stat.contains(") Z "),
                    "a hexz daemon is still running: {cmd}"
                );
            }
        }
    }
}

/// A real ext4 image (64 MiB) built from generated files with `mkfs.ext4 -d`.
fn ext4_image(d: &Dir) -> (PathBuf, PathBuf) {
    let tree = d.path("tree");
    std::fs::create_dir_all(tree.join("sub/deeper")).unwrap();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for i in 0..120u64 {
        let len = 1000 + (i * 7919 % 200_000) as usize;
        let mut v = Vec::with_capacity(len);
        while v.len() < len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Half compressible text, half noise.
            if (v.len() / 4096) % 2 == 0 {
                v.extend_from_slice(format!("line {i} {} of a real file\n", v.len()).as_bytes());
            } else {
                v.extend_from_slice(&x.to_le_bytes());
            }
        }
        v.truncate(len);
        let dir = match i % 3 {
            0 => tree.clone(),
            1 => tree.join("sub"),
            _ => tree.join("sub/deeper"),
        };
        std::fs::write(dir.join(format!("file{i}.dat")), &v).unwrap();
    }
    let img = d.path("disk.img");
    ok(Command::new(tool("mkfs.ext4"))
        .args(["-q", "-F", "-b", "4096", "-d"])
        .arg(&tree)
        .arg(&img)
        .arg("64M"));
    (img, tree)
}

fn pack(img: &Path, out: &Path, extra: &[&str]) {
    ok(hexz()
        .arg("pack")
        .arg("--disk")
        .arg(img)
        .arg("-o")
        .arg(out)
        .args(extra));
}

#[test]
fn mount_ext4_read_every_byte_fsck_debugfs_qemu_fio() {
    let d = tmp();
    let (img, tree) = ext4_image(&d);
    let arc = d.path("disk.hxz");
    pack(&img, &arc, &[]);
    let mp = d.path("mnt");
    let g = mount(&arc, &mp, &[]);
    let disk = mp.join("disk");
    let names: Vec<String> = std::fs::read_dir(&mp)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["disk".to_string()]);
    assert_eq!(
        std::fs::metadata(&disk).unwrap().len(),
        std::fs::metadata(&img).unwrap().len()
    );
    // Every byte, through the page cache, equals the image.
    assert!(
        std::fs::read(&disk).unwrap() == std::fs::read(&img).unwrap(),
        "mounted disk differs from the image"
    );
    let out = ok(Command::new(tool("e2fsck")).args(["-fn"]).arg(&disk));
    assert!(String::from_utf8_lossy(&out.stdout).contains("64M") || out.status.success());
    for f in [
        "file0.dat",
        "sub/file1.dat",
        "sub/deeper/file2.dat",
        "file99.dat",
    ] {
        let dump = d.path("dumped");
        let _ = std::fs::remove_file(&dump);
        ok(Command::new(tool("debugfs"))
            .arg("-R")
            .arg(format!("dump /{f} {}", s(&dump)))
            .arg(&disk));
        assert_eq!(
            std::fs::read(&dump).unwrap(),
            std::fs::read(tree.join(f)).unwrap(),
            "{f}"
        );
    }
    let out = ok(Command::new(tool("qemu-img"))
        .args(["compare", "-f", "raw", "-F", "raw"])
        .arg(&disk)
        .arg(&img));
    assert!(String::from_utf8_lossy(&out.stdout).contains("identical"));
    let out = ok(Command::new(tool("fio"))
        .args([
            "--name=rand",
            "--rw=randread",
            "--bs=4k",
            "--ioengine=psync",
            "--numjobs=4",
            "--size=64M",
            "--io_size=8M",
            "--group_reporting",
            "--output-format=terse",
        ])
        .arg(format!("--filename={}", s(&disk))));
    let terse = String::from_utf8_lossy(&out.stdout);
    // Terse v3: field 5 is the error count of the group.
    let fields: Vec<&str> = terse.lines().last().unwrap().split(';').collect();
    assert_eq!(fields[4], "0", "fio reported errors: {terse}");
    assert!(
        fields[6].parse::<u64>().unwrap() >= 8 * 1024,
        "fio read too little: {terse}"
    );
    // Writes to a read-only mount fail.
    assert!(std::fs::OpenOptions::new().write(true).open(&disk).is_err());
    unmount(&mp);
    no_daemon_for(&mp);
    drop(g);
}

#[test]
fn thin_child_and_encrypted_archives_mount() {
    let d = tmp();
    let (img, _) = ext4_image(&d);
    let base = d.path("base.hxz");
    pack(&img, &base, &[]);
    let mut v2 = std::fs::read(&img).unwrap();
    for b in &mut v2[5 << 20..(5 << 20) + 100_000] {
        *b = 0x5a;
    }
    let img2 = d.file("v2.img", &v2);
    let child = d.path("child.hxz");
    pack(&img2, &child, &["--base", s(&base)]);
    let mp = d.path("mnt");
    let _g = mount(&child, &mp, &[]);
    assert!(
        std::fs::read(mp.join("disk")).unwrap() == v2,
        "thin child mount differs from v2"
    );
    unmount(&mp);

    let enc = d.path("enc.hxz");
    let pw = d.file("pw", b"correct horse\n");
    pack(&img, &enc, &["--encrypt", "--password-file", s(&pw)]);
    let mp2 = d.path("mnt2");
    // Without a password (and no terminal) the mount fails with one line.
    std::fs::create_dir_all(&mp2).unwrap();
    let err = fails(hexz().arg("mount").arg(&enc).arg(&mp2).stdin(Stdio::null()));
    assert!(
        err.contains("Password") || err.contains("password"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let _g2 = mount(&enc, &mp2, &["--password-file", s(&pw)]);
    assert!(std::fs::read(mp2.join("disk")).unwrap() == std::fs::read(&img).unwrap());
    unmount(&mp2);
    // HEXZ_PASSWORD works too; a wrong one is a one-line error.
    std::fs::create_dir_all(d.path("mnt3")).unwrap();
    let err = fails(
        hexz()
            .arg("mount")
            .arg(&enc)
            .arg(d.path("mnt3"))
            .env("HEXZ_PASSWORD", "wrong"),
    );
    assert!(err.contains("wrong password"), "{err}");
    let _g3 = MountGuard(d.path("mnt3"));
    ok(hexz()
        .arg("mount")
        .arg(&enc)
        .arg(d.path("mnt3"))
        .env("HEXZ_PASSWORD", "correct horse"));
    let mut f = std::fs::File::open(d.path("mnt3/disk")).unwrap();
    let mut first = vec![0u8; 1 << 20];
    f.read_exact(&mut first).unwrap();
    assert!(first[..] == std::fs::read(&img).unwrap()[..1 << 20]);
    drop(f);
    unmount(&d.path("mnt3"));
}

#[test]
fn mount_errors_are_one_line() {
    let d = tmp();
    let arc = d.path("a.hxz");
    let raw = d.file("raw", &vec![7u8; 1 << 20]);
    pack(&raw, &arc, &[]);
    let err = fails(hexz().arg("mount").arg(&arc).arg(d.path("missing")));
    assert!(err.contains("does not exist"), "{err}");
    let full = d.path("full");
    std::fs::create_dir_all(&full).unwrap();
    std::fs::write(full.join("x"), b"x").unwrap();
    let err = fails(hexz().arg("mount").arg(&arc).arg(&full));
    assert!(err.contains("not empty"), "{err}");
    let mp = d.path("mnt");
    let _g = mount(&arc, &mp, &[]);
    let err = fails(hexz().arg("mount").arg(&arc).arg(&mp));
    assert!(err.contains("busy") || err.contains("not empty"), "{err}");
    // Busy: a file is open.
    let f = std::fs::File::open(mp.join("disk")).unwrap();
    let err = fails(hexz().arg("unmount").arg(&mp));
    assert!(err.contains("busy"), "{err}");
    drop(f);
    unmount(&mp);
    let err = fails(hexz().arg("unmount").arg(&mp));
    assert!(err.contains("not mounted"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let err = fails(hexz().arg("mount").arg(d.path("nope.hxz")).arg(&mp));
    assert!(err.contains("nope.hxz"), "{err}");
}

#[test]
fn corrupt_block_gives_eio_and_a_log_line_not_a_crash() {
    let d = tmp();
    let mut data = Vec::new();
    let mut x = 1u32;
    while data.len() < 4 << 20 {
        x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        data.extend_from_slice(&x.to_le_bytes());
    }
    let raw = d.file("raw", &data);
    let arc = d.path("a.hxz");
    pack(&raw, &arc, &["--compression", "none"]);
    // Flip a byte inside the stored data of some block in the middle (blocks are raw).
    let mut bytes = std::fs::read(&arc).unwrap();
    let pos = bytes
        .windows(16)
        .position(|w| w == &data[(2 << 20) + 100..(2 << 20) + 116])
        .unwrap();
    bytes[pos] ^= 0xff;
    std::fs::write(&arc, &bytes).unwrap();
    let mp = d.path("mnt");
    let log = d.path("mount.log");
    let _g = mount(&arc, &mp, &["--log", s(&log)]);
    let mut f = std::fs::File::open(mp.join("disk")).unwrap();
    let mut buf = vec![0u8; 64 << 10];
    use std::os::unix::fs::FileExt;
    let e = f.read_at(&mut buf, 2 << 20).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc_eio()), "{e}");
    // The rest still reads.
    f.read_exact(&mut buf).unwrap();
    assert_eq!(buf, data[..64 << 10]);
    drop(f);
    unmount(&mp);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("corrupt block 32 of disk stream"), "{text}");
}

fn libc_eio() -> i32 {
    5
}

#[test]
fn foreground_mount_unmounts_on_sigterm() {
    let d = tmp();
    let raw = d.file("raw", &vec![3u8; 1 << 20]);
    let arc = d.path("a.hxz");
    pack(&raw, &arc, &[]);
    let mp = d.path("mnt");
    std::fs::create_dir_all(&mp).unwrap();
    let _g = MountGuard(mp.clone());
    let child = hexz()
        .arg("mount")
        .arg(&arc)
        .arg(&mp)
        .arg("-f")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut cg = ChildGuard(child);
    let t = Instant::now();
    while !is_mounted(&mp) {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "foreground mount never came up"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(std::fs::read(mp.join("disk")).unwrap(), vec![3u8; 1 << 20]);
    // SAFETY-free: use the kill command.
    ok(Command::new("kill").arg("-TERM").arg(cg.0.id().to_string()));
    let st = cg.0.wait().unwrap();
    assert!(st.success(), "foreground mount exited with {st}");
    assert!(!is_mounted(&mp));
}

#[test]
fn overlay_debugfs_write_persists_and_commits_into_a_thin_child() {
    let d = tmp();
    let (img, _) = ext4_image(&d);
    let base = d.path("base.hxz");
    pack(&img, &base, &[]);
    let ov = d.path("changes.ovl");
    let mp = d.path("mnt");
    let g = mount(&base, &mp, &["--overlay", s(&ov)]);
    let disk = mp.join("disk");
    let newfile = d.file("new.txt", &b"written through the overlay\n".repeat(3000));
    ok(Command::new(tool("debugfs"))
        .arg("-w")
        .arg("-R")
        .arg(format!("write {} new.txt", s(&newfile)))
        .arg(&disk));
    ok(Command::new(tool("e2fsck")).arg("-fn").arg(&disk));
    // Committing while mounted is refused.
    let err = fails(
        hexz()
            .arg("commit")
            .arg(&ov)
            .arg("-o")
            .arg(d.path("early.hxz")),
    );
    assert!(err.contains("in use"), "{err}");
    assert!(!d.path("early.hxz").exists());
    unmount(&mp);
    no_daemon_for(&mp);
    drop(g);
    // The base is untouched; the change persists in the overlay across a remount.
    assert!(
        std::fs::read(&img).unwrap()
            == ok(hexz().args(["cat", s(&base), "--stream", "disk"])).stdout
    );
    let g = mount(&base, &mp, &["--overlay", s(&ov)]);
    let dumped = d.path("dumped.txt");
    ok(Command::new(tool("debugfs"))
        .arg("-R")
        .arg(format!("dump /new.txt {}", s(&dumped)))
        .arg(&disk));
    assert_eq!(
        std::fs::read(&dumped).unwrap(),
        std::fs::read(&newfile).unwrap()
    );
    let modified = std::fs::read(&disk).unwrap();
    assert!(modified != std::fs::read(&img).unwrap());
    unmount(&mp);
    drop(g);
    // Another archive refuses the overlay.
    let other = d.path("other.hxz");
    pack(&img, &other, &[]);
    std::fs::create_dir_all(d.path("mnt2")).unwrap();
    let _g2 = MountGuard(d.path("mnt2"));
    let err = fails(
        hexz()
            .arg("mount")
            .arg(&other)
            .arg(d.path("mnt2"))
            .arg("--overlay")
            .arg(&ov),
    );
    assert!(err.contains("another archive"), "{err}");
    // Commit: a thin child of the base, identical to the mounted disk, and small.
    let child = d.path("child.hxz");
    let out = ok(hexz()
        .arg("commit")
        .arg(&ov)
        .arg("-o")
        .arg(&child)
        .arg("--json"));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["changed_chunks"].as_u64().unwrap() > 0);
    let extracted = d.path("child.img");
    ok(hexz().args([
        "extract",
        s(&child),
        "--stream",
        "disk",
        "-o",
        s(&extracted),
    ]));
    assert!(
        std::fs::read(&extracted).unwrap() == modified,
        "committed child differs from the mounted disk"
    );
    ok(Command::new(tool("e2fsck")).arg("-fn").arg(&extracted));
    let info = ok(hexz().args(["info", s(&child), "--json"]));
    let info = String::from_utf8_lossy(&info.stdout);
    assert!(
        info.contains("base.hxz"),
        "child does not name its parent: {info}"
    );
    let child_len = std::fs::metadata(&child).unwrap().len();
    let base_len = std::fs::metadata(&base).unwrap().len();
    assert!(
        child_len * 5 < base_len,
        "child {child_len} is not a small fraction of base {base_len}"
    );
    // The overlay is left as it was.
    assert!(ov.exists());
}

#[test]
fn encrypted_overlay_keeps_written_data_encrypted() {
    let d = tmp();
    let raw = d.file("raw", &vec![0x11u8; 2 << 20]);
    let pw = d.file("pw", b"pw-for-overlay");
    let enc = d.path("enc.hxz");
    pack(&raw, &enc, &["--encrypt", "--password-file", s(&pw)]);
    let ov = d.path("enc.ovl");
    let mp = d.path("mnt");
    let _g = mount(&enc, &mp, &["--overlay", s(&ov), "--password-file", s(&pw)]);
    let secret = b"TOP-SECRET-PLAINTEXT-".repeat(200);
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(mp.join("disk"))
            .unwrap();
        f.write_all_at(&secret, 12345).unwrap();
        f.sync_all().unwrap();
    }
    let seen = std::fs::read(mp.join("disk")).unwrap();
    assert_eq!(&seen[12345..12345 + secret.len()], &secret[..]);
    unmount(&mp);
    let on_disk = std::fs::read(&ov).unwrap();
    assert!(
        !on_disk.windows(21).any(|w| w == b"TOP-SECRET-PLAINTEXT-"),
        "plaintext found in the overlay file"
    );
    let child = d.path("child.hxz");
    ok(hexz()
        .arg("commit")
        .arg(&ov)
        .arg("-o")
        .arg(&child)
        .arg("--password-file")
        .arg(&pw));
    let out = ok(hexz().args([
        "cat",
        s(&child),
        "--stream",
        "disk",
        "--password-file",
        s(&pw),
    ]));
    assert!(out.stdout == seen);
}

/// Starts `hexz serve` on a free port; returns the guard and the address.
fn serve(archive: &Path, extra: &[&str]) -> (ChildGuard, String) {
    let mut child = hexz()
        .arg("serve")
        .arg(archive)
        .args(["--nbd", "127.0.0.1:0"])
        .args(extra)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let guard = ChildGuard(child);
    let mut line = String::new();
    BufReader::new(stderr).read_line(&mut line).unwrap();
    let addr = line
        .split(" on ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_string();
    (guard, addr)
}

#[test]
fn nbd_qemu_compare_two_clients_write_through_overlay_and_sigterm() {
    let d = tmp();
    let (img, _) = ext4_image(&d);
    let arc = d.path("disk.hxz");
    pack(&img, &arc, &[]);
    let (mut g, addr) = serve(&arc, &[]);
    let url = format!("nbd://{addr}/disk");
    // Two clients at once.
    let c1 = Command::new(tool("qemu-img"))
        .args(["compare", "-F", "raw", &url])
        .arg(&img)
        .output();
    let mut c2 = Command::new(tool("qemu-img"))
        .args(["compare", "-F", "raw", &url])
        .arg(&img)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let c1 = c1.unwrap();
    assert!(
        c1.status.success(),
        "{}",
        String::from_utf8_lossy(&c1.stderr)
    );
    assert!(String::from_utf8_lossy(&c1.stdout).contains("identical"));
    assert!(c2.wait().unwrap().success());
    // Read-only: a write fails.
    let out = Command::new(tool("qemu-io"))
        .args(["-f", "raw", "-c", "write -P 0xab 0 64k", &url])
        .output()
        .unwrap();
    assert!(
        !out.status.success()
            || String::from_utf8_lossy(&out.stdout).contains("failed")
            || String::from_utf8_lossy(&out.stderr).contains("read-only")
            || String::from_utf8_lossy(&out.stderr).contains("ermission"),
        "write to a read-only export succeeded"
    );
    ok(Command::new("kill").arg("-TERM").arg(g.0.id().to_string()));
    let st = g.0.wait().unwrap();
    assert!(st.success(), "serve exited with {st}");

    // Writable through an overlay.
    let ov = d.path("nbd.ovl");
    let (mut g, addr) = serve(&arc, &["--overlay", s(&ov)]);
    let url = format!("nbd://{addr}/disk");
    ok(Command::new(tool("qemu-io")).args([
        "-f",
        "raw",
        "-c",
        "write -P 0xab 4096 64k",
        "-c",
        "flush",
        &url,
    ]));
    let out =
        ok(Command::new(tool("qemu-io")).args(["-f", "raw", "-c", "read -P 0xab 4096 64k", &url]));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("Pattern verification failed"));
    let copy = d.path("copy.img");
    ok(Command::new(tool("qemu-img")).args(["convert", "-O", "raw", &url, s(&copy)]));
    let mut want = std::fs::read(&img).unwrap();
    want[4096..4096 + 65536].fill(0xab);
    assert!(
        std::fs::read(&copy).unwrap() == want,
        "NBD copy after the write differs"
    );
    ok(Command::new("kill").arg("-TERM").arg(g.0.id().to_string()));
    assert!(g.0.wait().unwrap().success());
    let child = d.path("child.hxz");
    ok(hexz().arg("commit").arg(&ov).arg("-o").arg(&child));
    assert!(ok(hexz().args(["cat", s(&child), "--stream", "disk"])).stdout == want);
}

#[test]
fn nbd_hostile_clients_are_dropped_and_the_server_keeps_serving() {
    let d = tmp();
    let data: Vec<u8> = (0..1u32 << 20).map(|i| (i % 253) as u8).collect();
    let raw = d.file("raw", &data);
    let arc = d.path("a.hxz");
    pack(&raw, &arc, &[]);
    let (mut g, addr) = serve(&arc, &[]);
    use std::net::TcpStream;
    // Garbage instead of client flags and options.
    let mut s1 = TcpStream::connect(&addr).unwrap();
    s1.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut greet = [0u8; 18];
    s1.read_exact(&mut greet).unwrap();
    assert_eq!(&greet[..8], b"NBDMAGIC");
    s1.write_all(&[0xff; 64]).unwrap();
    let mut rest = Vec::new();
    let _ = s1.read_to_end(&mut rest);
    // A huge option length.
    let mut s2 = TcpStream::connect(&addr).unwrap();
    s2.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s2.read_exact(&mut greet).unwrap();
    let mut m = 3u32.to_be_bytes().to_vec();
    m.extend_from_slice(b"IHAVEOPT");
    m.extend_from_slice(&7u32.to_be_bytes());
    m.extend_from_slice(&u32::MAX.to_be_bytes());
    s2.write_all(&m).unwrap();
    let mut rest = Vec::new();
    let _ = s2.read_to_end(&mut rest);
    assert!(rest.is_empty(), "server answered a 4 GiB option");
    // A proper client with a huge read length and a bad request magic.
    let mut s3 = TcpStream::connect(&addr).unwrap();
    s3.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s3.read_exact(&mut greet).unwrap();
    let mut m = 3u32.to_be_bytes().to_vec();
    m.extend_from_slice(b"IHAVEOPT");
    m.extend_from_slice(&1u32.to_be_bytes());
    m.extend_from_slice(&4u32.to_be_bytes());
    m.extend_from_slice(b"disk");
    s3.write_all(&m).unwrap();
    let mut ex = [0u8; 10];
    s3.read_exact(&mut ex).unwrap();
    assert_eq!(u64::from_be_bytes(ex[..8].try_into().unwrap()), 1 << 20);
    // In-range read works.
    let req = |cmd: u16, off: u64, len: u32| {
        let mut r = 0x2560_9513u32.to_be_bytes().to_vec();
        r.extend_from_slice(&0u16.to_be_bytes());
        r.extend_from_slice(&cmd.to_be_bytes());
        r.extend_from_slice(&42u64.to_be_bytes());
        r.extend_from_slice(&off.to_be_bytes());
        r.extend_from_slice(&len.to_be_bytes());
        r
    };
    s3.write_all(&req(0, 1000, 4096)).unwrap();
    let mut rep = [0u8; 16];
    s3.read_exact(&mut rep).unwrap();
    assert_eq!(&rep[4..8], &[0, 0, 0, 0]);
    let mut got = vec![0u8; 4096];
    s3.read_exact(&mut got).unwrap();
    assert_eq!(got, data[1000..1000 + 4096]);
    // Out of range: EINVAL, connection stays.
    s3.write_all(&req(0, u64::MAX - 10, 4096)).unwrap();
    s3.read_exact(&mut rep).unwrap();
    assert_eq!(u32::from_be_bytes(rep[4..8].try_into().unwrap()), 22);
    // 4 GiB read: closed.
    s3.write_all(&req(0, 0, u32::MAX)).unwrap();
    let mut rest = Vec::new();
    let _ = s3.read_to_end(&mut rest);
    assert!(rest.is_empty());
    // The server still serves a real client.
    let copy = d.path("copy");
    ok(Command::new(tool("qemu-img")).args([
        "convert",
        "-O",
        "raw",
        &format!("nbd://{addr}/disk"),
        s(&copy),
    ]));
    assert!(std::fs::read(&copy).unwrap() == data);
    // An unknown export is an error, not a crash.
    let out = Command::new(tool("qemu-img"))
        .args(["info", &format!("nbd://{addr}/nosuch")])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(g.0.try_wait().unwrap().is_none(), "the server died");
    ok(Command::new("kill").arg("-TERM").arg(g.0.id().to_string()));
    assert!(g.0.wait().unwrap().success());
}
