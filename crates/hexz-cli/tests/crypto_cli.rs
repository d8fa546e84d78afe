//! Encryption, passwords and signatures through the `hexz` binary: --encrypt, --kdf,
//! --password-file, HEXZ_PASSWORD / HEXZ_NEW_PASSWORD / HEXZ_KEY_PASSWORD, keygen, sign,
//! verify --pubkey, passwd, and what happens without a terminal to prompt on.
//!
//! Every command runs in a new session (no controlling terminal) with the password variables
//! cleared, so a missing password is an error instead of a prompt.

use hexz_core::algo::encryption::Password;
use hexz_core::algo::signing;
use serde_json::Value;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;

use std::process::{Child, Command, Output, Stdio};

mod common;
use common::{s, tmp};

const VARS: [&str; 3] = ["HEXZ_PASSWORD", "HEXZ_NEW_PASSWORD", "HEXZ_KEY_PASSWORD"];

fn hexz(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_hexz"));
    c.args(args);
    for v in VARS {
        c.env_remove(v);
    }
    for (k, v) in env {
        c.env(k, v);
    }
    // SAFETY: setsid is async-signal-safe; it detaches the child from any terminal so that
    // password prompts cannot open /dev/tty.
    unsafe {
        c.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    c
}

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    hexz(args, env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("spawn hexz")
}

fn ok(args: &[&str], env: &[(&str, &str)]) -> Output {
    let o = run(args, env);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.success(),
        "hexz {args:?} failed ({}): {err}",
        o.status
    );
    assert!(!err.contains("panicked"), "{err}");
    o
}

/// A command that must fail: non-zero exit, one stderr line "hexz: error: ...", no panic.
fn fails(args: &[&str], env: &[(&str, &str)]) -> String {
    let o = run(args, env);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(
        !o.status.success(),
        "hexz {args:?} succeeded; stderr: {err}"
    );
    assert_eq!(o.status.code(), Some(1), "hexz {args:?}: {err}");
    assert!(!err.contains("panicked"), "hexz {args:?} panicked: {err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "hexz {args:?}: stderr is not one line: {err:?}"
    );
    assert!(lines[0].starts_with("hexz: error: "), "{err:?}");
    lines[0].to_string()
}

fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).expect("JSON on stdout")
}

/// Distinctive text lines, random bytes and zeros in 64 KiB regions.
fn sample(len: usize, seed: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(len + 100);
    let mut x = seed;
    let mut region = 0;
    while v.len() < len {
        match region % 3 {
            0 => {
                let start = v.len();
                let mut i = 0;
                while v.len() < start + (64 << 10) {
                    v.extend_from_slice(
                        format!(
                            "confidential line {seed}/{region}/{i}: lorem ipsum dolor sit amet\n"
                        )
                        .as_bytes(),
                    );
                    i += 1;
                }
            }
            1 => {
                for _ in 0..(64 << 10) / 8 {
                    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
                    let mut z = x;
                    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
                    v.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
                }
            }
            _ => v.resize(v.len() + (64 << 10), 0),
        }
        region += 1;
    }
    v.truncate(len);
    v
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

// ---------------------------------------------------------------------------------------------

#[test]
fn encrypted_pack_and_read_with_password_file_and_env() {
    let d = tmp();
    let data = sample(3 << 20, 1);
    let img = d.file("d.img", &data);
    let pwf = d.file("pw.txt", b"s3cret phrase\n");
    let out = d.path("e.hxz");
    let env = [("HEXZ_PASSWORD", "s3cret phrase")];
    ok(
        &[
            "pack",
            "--encrypt",
            "--password-file",
            s(&pwf),
            "--disk",
            s(&img),
            "-o",
            s(&out),
        ],
        &[],
    );
    let a = std::fs::read(&out).unwrap();
    assert!(
        !contains(&a, b"confidential line"),
        "plaintext in the archive"
    );
    assert!(a[32..49].iter().all(|&b| b == 0), "header sizes hidden");

    // The password file's first line (without its newline) and HEXZ_PASSWORD are the same
    // password.
    let o = ok(&["cat", s(&out), "--password-file", s(&pwf)], &[]);
    assert!(o.stdout == data, "cat with --password-file");
    let o = ok(
        &["cat", s(&out), "--offset", "100000", "--length", "5000"],
        &env,
    );
    assert!(
        o.stdout == data[100_000..105_000],
        "cat slice with HEXZ_PASSWORD"
    );
    let x = d.path("x.img");
    ok(&["extract", s(&out), "-o", s(&x)], &env);
    assert!(std::fs::read(&x).unwrap() == data);
    let v = json(&ok(&["info", "--json", s(&out)], &env));
    assert_eq!(
        v["encryption"], "PBKDF2-HMAC-SHA256, 600000 iterations",
        "{v}"
    );
    assert_eq!(v["signed"], false);
    assert_eq!(v["streams"][0]["logical_size"], data.len() as u64, "{v}");
    assert_eq!(v["logical_bytes"], data.len() as u64, "{v}");
    let o = ok(&["verify", s(&out)], &env);
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("ok: "));

    // Wrong password.
    let line = fails(&["cat", s(&out)], &[("HEXZ_PASSWORD", "s3cret phras")]);
    assert!(line.contains("wrong password or not a hexz key"), "{line}");
    let bad = d.file("bad.txt", b"nope\n");
    let line = fails(&["info", s(&out), "--password-file", s(&bad)], &[]);
    assert!(line.contains("wrong password"), "{line}");
    // --password-file wins over HEXZ_PASSWORD.
    let line = fails(&["cat", s(&out), "--password-file", s(&bad)], &env);
    assert!(line.contains("wrong password"), "{line}");

    // No password and no terminal: a clear one-line error for readers and for pack.
    for cmd in ["cat", "info", "verify"] {
        let line = fails(&[cmd, s(&out)], &[]);
        assert!(
            line.contains("HEXZ_PASSWORD") && line.contains("--password-file"),
            "{cmd}: {line}"
        );
    }
    let line = fails(&["extract", s(&out), "-o", s(&d.path("y.img"))], &[]);
    assert!(line.contains("HEXZ_PASSWORD"), "{line}");
    assert!(!d.path("y.img").exists());
    let before = d.names();
    let line = fails(
        &[
            "pack",
            "--encrypt",
            "--disk",
            s(&img),
            "-o",
            s(&d.path("n.hxz")),
        ],
        &[],
    );
    assert!(
        line.contains("HEXZ_PASSWORD") && line.contains("--password-file"),
        "{line}"
    );
    assert_eq!(d.names(), before, "a refused pack leaves nothing");
    // A missing password file is named.
    let line = fails(
        &["cat", s(&out), "--password-file", s(&d.path("missing.txt"))],
        &[],
    );
    assert!(line.contains("missing.txt"), "{line}");
}

#[test]
fn argon2id_from_the_cli() {
    let d = tmp();
    let data = sample(700_000, 2);
    let img = d.file("d.img", &data);
    let out = d.path("a.hxz");
    let env = [("HEXZ_PASSWORD", "argon pw")];
    ok(
        &[
            "pack",
            "--encrypt",
            "--kdf",
            "argon2id",
            "--compression",
            "zstd",
            "--disk",
            s(&img),
            "-o",
            s(&out),
        ],
        &env,
    );
    let a = std::fs::read(&out).unwrap();
    assert_eq!(a[144], 2, "Argon2id id in the header");
    let v = json(&ok(&["info", "--json", s(&out)], &env));
    assert_eq!(v["encryption"], "Argon2id, 64 MiB, t=3, p=1", "{v}");
    assert_eq!(v["compression"], "zstd", "{v}");
    assert!(ok(&["cat", s(&out)], &env).stdout == data);
    // --kdf needs --encrypt; an unknown KDF is refused.
    let o = run(
        &[
            "pack",
            "--kdf",
            "argon2id",
            "--disk",
            s(&img),
            "-o",
            s(&d.path("b.hxz")),
        ],
        &env,
    );
    assert!(!o.status.success());
    let o = run(
        &[
            "pack",
            "--encrypt",
            "--kdf",
            "scrypt",
            "--disk",
            s(&img),
            "-o",
            s(&d.path("b.hxz")),
        ],
        &env,
    );
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("pbkdf2 or argon2id"));
    assert!(!d.path("b.hxz").exists());
}

#[test]
fn keygen_writes_an_owner_only_secret_and_a_public_key() {
    let d = tmp();
    let k = d.path("k");
    ok(&["keygen", "-o", s(&k)], &[]);
    let mode = std::fs::metadata(&k).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "secret key mode {mode:o}");
    let pubp = d.path("k.pub");
    let public = signing::parse_public_key(&std::fs::read_to_string(&pubp).unwrap()).unwrap();
    let secret = std::fs::read_to_string(&k).unwrap();
    let seed = signing::parse_secret_key(&secret, None).unwrap();
    assert_eq!(signing::public_of(&seed), public);
    // Refuses to overwrite either file.
    let line = fails(&["keygen", "-o", s(&k)], &[]);
    assert!(line.contains(s(&k)), "{line}");
    assert_eq!(std::fs::read_to_string(&k).unwrap(), secret);
    std::fs::remove_file(&k).unwrap();
    let line = fails(&["keygen", "-o", s(&k)], &[]);
    assert!(line.contains("k.pub"), "{line}");
    assert!(!k.exists());
    // Two keys differ.
    ok(&["keygen", "-o", s(&d.path("k2"))], &[]);
    assert_ne!(
        std::fs::read(d.path("k2.pub")).unwrap(),
        std::fs::read(&pubp).unwrap()
    );
}

#[test]
fn protected_key_signs_only_with_its_password() {
    let d = tmp();
    let k = d.path("pk");
    let kenv = [("HEXZ_KEY_PASSWORD", "key pass")];
    // --protect without a password and without a terminal fails.
    let line = fails(&["keygen", "--protect", "-o", s(&k)], &[]);
    assert!(line.contains("HEXZ_KEY_PASSWORD"), "{line}");
    assert!(!k.exists());
    ok(&["keygen", "--protect", "-o", s(&k)], &kenv);
    let mode = std::fs::metadata(&k).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let text = std::fs::read_to_string(&k).unwrap();
    assert!(!text.contains("plain"), "{text}");
    assert!(matches!(
        signing::parse_secret_key(&text, None),
        Err(hexz_core::Error::PasswordRequired(_))
    ));
    let seed = signing::parse_secret_key(&text, Some(&Password::new("key pass"))).unwrap();
    assert!(
        !text.contains(&hex(&*seed)),
        "the seed is in the key file in plain hex"
    );
    let public =
        signing::parse_public_key(&std::fs::read_to_string(d.path("pk.pub")).unwrap()).unwrap();
    assert_eq!(signing::public_of(&seed), public);

    let img = d.file("d.img", &sample(300_000, 3));
    let out = d.path("u.hxz");
    ok(&["pack", "--disk", s(&img), "-o", s(&out)], &[]);
    let before = std::fs::read(&out).unwrap();
    let line = fails(&["sign", s(&out), "--key", s(&k)], &[]);
    assert!(line.contains("HEXZ_KEY_PASSWORD"), "{line}");
    let line = fails(
        &["sign", s(&out), "--key", s(&k)],
        &[("HEXZ_KEY_PASSWORD", "key pas")],
    );
    assert!(line.contains("wrong password"), "{line}");
    assert!(
        std::fs::read(&out).unwrap() == before,
        "failed signs leave the archive"
    );
    let kp = d.file("kp.txt", b"key pass\n");
    ok(
        &[
            "sign",
            s(&out),
            "--key",
            s(&k),
            "--key-password-file",
            s(&kp),
        ],
        &[],
    );
    let o = ok(&["verify", s(&out), "--pubkey", s(&d.path("pk.pub"))], &[]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("signature valid"), "{text}");
}

#[test]
fn sign_verify_and_passwd_of_an_encrypted_archive() {
    let d = tmp();
    let data = sample(1 << 20, 4);
    let img = d.file("d.img", &data);
    let out = d.path("e.hxz");
    let k = d.path("k");
    let other = d.path("other");
    ok(&["keygen", "-o", s(&k)], &[]);
    ok(&["keygen", "-o", s(&other)], &[]);
    let (kpub, opub) = (d.path("k.pub"), d.path("other.pub"));
    let old = [("HEXZ_PASSWORD", "old pw")];
    ok(
        &["pack", "--encrypt", "--disk", s(&img), "-o", s(&out)],
        &old,
    );

    // Signing an encrypted archive needs its password too.
    let line = fails(&["sign", s(&out), "--key", s(&k)], &[]);
    assert!(line.contains("HEXZ_PASSWORD"), "{line}");
    ok(&["sign", s(&out), "--key", s(&k)], &old);
    let o = ok(&["verify", s(&out), "--pubkey", s(&kpub)], &old);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("signature valid"), "{text}");
    let line = fails(&["verify", s(&out), "--pubkey", s(&opub)], &old);
    assert!(line.contains("signed by another key"), "{line}");
    let v = json(&ok(&["info", "--json", s(&out)], &old));
    assert_eq!(v["signed"], true, "{v}");
    assert!(
        v["encryption"].as_str().unwrap().starts_with("PBKDF2"),
        "{v}"
    );
    assert!(ok(&["cat", s(&out), "--pubkey", s(&kpub)], &old).stdout == data);
    let line = fails(&["cat", s(&out), "--pubkey", s(&opub)], &old);
    assert!(line.contains("another key"), "{line}");

    // passwd: old password from HEXZ_PASSWORD, new from HEXZ_NEW_PASSWORD.
    let line = fails(&["passwd", s(&out)], &old);
    assert!(line.contains("HEXZ_NEW_PASSWORD"), "{line}");
    let line = fails(
        &["passwd", s(&out)],
        &[
            ("HEXZ_PASSWORD", "not old"),
            ("HEXZ_NEW_PASSWORD", "new pw"),
        ],
    );
    assert!(line.contains("wrong password"), "{line}");
    ok(
        &["passwd", s(&out)],
        &[("HEXZ_PASSWORD", "old pw"), ("HEXZ_NEW_PASSWORD", "new pw")],
    );
    let line = fails(&["cat", s(&out)], &old);
    assert!(line.contains("wrong password"), "{line}");
    let new = [("HEXZ_PASSWORD", "new pw")];
    let o = ok(&["verify", s(&out), "--pubkey", s(&kpub)], &new);
    assert!(String::from_utf8_lossy(&o.stdout).contains("signature valid"));
    assert!(ok(&["cat", s(&out)], &new).stdout == data);

    // passwd of an unencrypted archive is refused.
    let plain = d.path("p.hxz");
    ok(&["pack", "--disk", s(&img), "-o", s(&plain)], &[]);
    let line = fails(
        &["passwd", s(&plain)],
        &[("HEXZ_PASSWORD", "a"), ("HEXZ_NEW_PASSWORD", "b")],
    );
    assert!(line.contains("not encrypted"), "{line}");
}

#[test]
fn pubkey_refuses_unsigned_archives() {
    let d = tmp();
    let img = d.file("d.img", &sample(200_000, 5));
    let out = d.path("u.hxz");
    ok(&["pack", "--disk", s(&img), "-o", s(&out)], &[]);
    ok(&["keygen", "-o", s(&d.path("k"))], &[]);
    let kpub = d.path("k.pub");
    for args in [
        vec!["cat", s(&out), "--pubkey", s(&kpub)],
        vec!["verify", s(&out), "--pubkey", s(&kpub)],
        vec!["info", s(&out), "--pubkey", s(&kpub)],
    ] {
        let line = fails(&args, &[]);
        assert!(line.contains("not signed"), "{args:?}: {line}");
    }
    let x = d.path("x.img");
    let line = fails(
        &["extract", s(&out), "-o", s(&x), "--pubkey", s(&kpub)],
        &[],
    );
    assert!(line.contains("not signed"), "{line}");
    assert!(!x.exists());
    // A secret key file is not a public key.
    let line = fails(&["verify", s(&out), "--pubkey", s(&d.path("k"))], &[]);
    assert!(line.contains("public key"), "{line}");
    // Tampering after signing: verify --pubkey fails.
    let v = json(&ok(&["info", "--json", s(&out)], &[]));
    assert_eq!(
        (&v["encryption"], &v["signed"]),
        (&Value::Null, &Value::Bool(false)),
        "{v}"
    );
    ok(&["sign", s(&out), "--key", s(&d.path("k"))], &[]);
    ok(&["verify", s(&out), "--pubkey", s(&kpub)], &[]);
    let v = json(&ok(&["info", "--json", s(&out), "--pubkey", s(&kpub)], &[]));
    assert_eq!(
        (&v["encryption"], &v["signed"]),
        (&Value::Null, &Value::Bool(true)),
        "{v}"
    );
    let mut a = std::fs::read(&out).unwrap();
    a[88] ^= 1;
    let crc = crc32(&a[..508]);
    a[508..512].copy_from_slice(&crc.to_le_bytes());
    let t = d.file("t.hxz", &a);
    ok(&["verify", s(&t)], &[]);
    let line = fails(&["verify", s(&t), "--pubkey", s(&kpub)], &[]);
    assert!(line.contains("signature"), "{line}");
}

/// CRC32 (IEEE), bitwise: enough for fixing up a test header.
fn crc32(b: &[u8]) -> u32 {
    let mut c = !0u32;
    for &x in b {
        c ^= x as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0xedb8_8320
            } else {
                c >> 1
            };
        }
    }
    !c
}

#[test]
fn killed_encrypted_pack_from_a_pipe_leaves_no_archive() {
    let d = tmp();
    let target = d.path("live.hxz");
    let mut child: Child = hexz(
        &["pack", "--encrypt", "--disk", "-", "-o", s(&target)],
        &[("HEXZ_PASSWORD", "pipe pw")],
    )
    .stdin(Stdio::piped())
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    // Once 8 MiB have been written the key has been derived and hexz is midway through
    // packing (stdin is still open, so it cannot have finished).
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&sample(8 << 20, 6)).unwrap();
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
    assert!(!child.wait().unwrap().success());
    drop(stdin);
    assert!(!target.exists(), "a killed pack left {}", target.display());
    let debris: Vec<String> = d
        .names()
        .into_iter()
        .filter(|n| n.contains("live.hxz"))
        .collect();
    assert!(debris.is_empty(), "a killed pack left {debris:?}");
}

#[test]
fn sign_and_passwd_in_place_keep_the_file_and_its_content() {
    use std::os::unix::fs::MetadataExt;
    let d = tmp();
    let img = d.path("d.img");
    let data = sample(300_000, 7);
    std::fs::write(&img, &data).unwrap();
    let arc = d.path("a.hxz");
    let env = [("HEXZ_PASSWORD", "one")];
    ok(
        &["pack", "--disk", s(&img), "--encrypt", "-o", s(&arc)],
        &env,
    );
    ok(&["keygen", "-o", s(&d.path("k"))], &[]);
    let ino = std::fs::metadata(&arc).unwrap().ino();
    ok(
        &["sign", s(&arc), "--key", s(&d.path("k")), "--in-place"],
        &env,
    );
    assert_eq!(
        std::fs::metadata(&arc).unwrap().ino(),
        ino,
        "signed in place"
    );
    let out = ok(&["verify", s(&arc), "--pubkey", s(&d.path("k.pub"))], &env);
    assert!(String::from_utf8_lossy(&out.stdout).contains("signature valid"));
    ok(
        &["passwd", s(&arc), "--in-place"],
        &[("HEXZ_PASSWORD", "one"), ("HEXZ_NEW_PASSWORD", "two")],
    );
    assert_eq!(
        std::fs::metadata(&arc).unwrap().ino(),
        ino,
        "rewrapped in place"
    );
    let line = fails(&["cat", s(&arc)], &env);
    assert!(line.contains("wrong password"), "{line}");
    let out = ok(
        &["cat", s(&arc), "--pubkey", s(&d.path("k.pub"))],
        &[("HEXZ_PASSWORD", "two")],
    );
    assert!(out.stdout == data, "content after in-place passwd");
    // The default (copy) path replaces the file.
    ok(
        &["passwd", s(&arc)],
        &[("HEXZ_PASSWORD", "two"), ("HEXZ_NEW_PASSWORD", "three")],
    );
    assert_ne!(
        std::fs::metadata(&arc).unwrap().ino(),
        ino,
        "copy-and-rename"
    );
}
