//! The `hexz` commands against real servers on loopback: nginx (HTTP range requests) and
//! SeaweedFS (S3 with signature checks), started by the test and stopped afterwards.
//!
//! One test function (the servers are shared, starting SeaweedFS takes seconds) running
//! cases that each report: URLs in info/cat/extract/verify/diff; push and pull round trips
//! with --with-parents; pack -o s3:// (single PUT, multipart, and a file tree); an
//! interrupted streaming upload leaves no object and no multipart upload; a second pass with
//! --cache-dir makes no request (counted in nginx's access log), also with two processes
//! sharing the cache.

#[path = "../../hexz-core/tests/common/mod.rs"]
mod common;
#[path = "../../hexz-core/tests/servers/mod.rs"]
mod servers;

use hexz_core::store::s3::{S3Client, S3Config};
use hexz_core::store::RemoteOptions;
use serde_json::Value;
use servers::{Nginx, Seaweed, S3_KEY, S3_SECRET};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const HEXZ: &str = env!("CARGO_BIN_EXE_hexz");
const BUCKET: &str = "hexz-cli";

struct Env {
    nginx: Nginx,
    s3: Seaweed,
    dir: tempfile::TempDir,
}

impl Env {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `hexz ARGS` with the S3 test identity in its environment.
    fn hexz(&self, args: &[&str]) -> Command {
        let mut c = Command::new(HEXZ);
        c.args(args)
            .env("AWS_ENDPOINT_URL", self.s3.endpoint())
            .env("AWS_ACCESS_KEY_ID", S3_KEY)
            .env("AWS_SECRET_ACCESS_KEY", S3_SECRET)
            .env("AWS_REGION", "us-east-1")
            .env_remove("AWS_PROFILE")
            .env_remove("HEXZ_CACHE_DIR")
            .env_remove("HEXZ_PASSWORD")
            .env("HEXZ_ALLOW_RESTRICTED", "1")
            .stdin(Stdio::null());
        c
    }

    fn ok(&self, args: &[&str]) -> Output {
        let out = self.hexz(args).output().unwrap();
        assert!(
            out.status.success(),
            "hexz {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn client(&self) -> Arc<S3Client> {
        let config = S3Config::custom(
            &self.s3.endpoint(),
            "us-east-1",
            Some(hexz_core::store::s3::Credentials::new(S3_KEY, S3_SECRET)),
        );
        let opts = RemoteOptions {
            allow_restricted: true,
            ..RemoteOptions::default()
        };
        Arc::new(S3Client::new(BUCKET, &config, &opts).unwrap())
    }

    /// The request lines nginx logged since the last call.
    fn new_requests(&self, seen: &mut usize) -> Vec<String> {
        let all = self.nginx.requests();
        let fresh = all[*seen..].to_vec();
        *seen = all.len();
        fresh
    }
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("bad JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

#[allow(clippy::type_complexity)]
fn run_cases(cases: Vec<(&str, Box<dyn FnOnce() + '_>)>) {
    let mut failed = Vec::new();
    for (name, case) in cases {
        let t = Instant::now();
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(case)) {
            Ok(()) => eprintln!("case {name}: ok ({:.1}s)", t.elapsed().as_secs_f64()),
            Err(e) => {
                let msg = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                eprintln!("case {name}: FAILED: {msg}");
                failed.push(name);
            }
        }
    }
    assert!(failed.is_empty(), "failed cases: {failed:?}");
}

/// Data for the archives: a base image and a child that differs in one MiB.
fn images(env: &Env) -> (Vec<u8>, Vec<u8>) {
    let base = common::mixed_data(6 << 20, 65536, 11);
    let mut child = base.clone();
    let mut rng = common::Rng::new(12);
    rng.fill(&mut child[(2 << 20)..(3 << 20)]);
    std::fs::write(env.path("base.raw"), &base).unwrap();
    std::fs::write(env.path("child.raw"), &child).unwrap();
    (base, child)
}

#[test]
fn commands_with_urls_against_nginx_and_seaweedfs() {
    let (Some(nginx), Some(s3)) = (Nginx::start(), Seaweed::start()) else {
        return;
    };
    let env = Env {
        nginx,
        s3,
        dir: tempfile::tempdir().unwrap(),
    };
    let c = env.client();
    let t = Instant::now();
    loop {
        match c.create_bucket() {
            Ok(()) => break,
            Err(e) if t.elapsed() < Duration::from_secs(30) => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(300));
            }
            Err(e) => panic!("cannot create the bucket: {e}\n{}", env.s3.log()),
        }
    }
    let (base, child) = images(&env);
    let (b, ch) = (env.path("base.hxz"), env.path("child.hxz"));
    env.ok(&["pack", "--disk", p(&env.path("base.raw")), "-o", p(&b)]);
    env.ok(&[
        "pack",
        "--disk",
        p(&env.path("child.raw")),
        "--base",
        p(&b),
        "-o",
        p(&ch),
    ]);
    env.nginx.put_file("v/base.hxz", &b);
    env.nginx.put_file("v/child.hxz", &ch);
    let (base, child) = (&base, &child);
    let env = &env;

    run_cases(vec![
        (
            "urls_in_reading_commands",
            Box::new(move || {
                let url = env.nginx.url("v/child.hxz");
                let info = json(&env.ok(&["info", &url, "--json"]));
                assert_eq!(info["streams"][0]["logical_size"], child.len() as u64);
                assert_eq!(info["chain"].as_array().map(Vec::len), Some(2), "{info}");
                let out = env.ok(&["cat", &url]);
                assert!(
                    out.stdout == *child,
                    "cat over http returns the child's bytes"
                );
                let part = env.ok(&["cat", &url, "--offset", "1M", "--length", "100K"]);
                assert!(part.stdout[..] == child[1 << 20..(1 << 20) + 102400]);
                let x = env.path("extracted.raw");
                env.ok(&["extract", &url, "-o", p(&x)]);
                assert!(std::fs::read(&x).unwrap() == *child);
                let v = json(&env.ok(&["verify", &url, "--json"]));
                assert_eq!(v["ok"], true);
                assert_eq!(v["archives"], 2);
                let remote = json(&env.ok(&["diff", &env.nginx.url("v/base.hxz"), &url, "--json"]));
                let local = json(&env.ok(&[
                    "diff",
                    p(&env.path("base.hxz")),
                    p(&env.path("child.hxz")),
                    "--json",
                ]));
                assert_eq!(remote["streams"], local["streams"]);
                assert_eq!(remote["identical"], false);
                // flatten from a URL to a local standalone archive.
                let flat = env.path("flat.hxz");
                env.ok(&["flatten", &url, "-o", p(&flat)]);
                assert!(env.ok(&["cat", p(&flat)]).stdout == *child);
                // Restricted addresses are refused without the flag or the variable.
                let out = env
                    .hexz(&["info", &url])
                    .env_remove("HEXZ_ALLOW_RESTRICTED")
                    .output()
                    .unwrap();
                assert!(!out.status.success());
                let err = String::from_utf8_lossy(&out.stderr);
                assert_eq!(err.trim().lines().count(), 1, "one-line error: {err}");
                let out = env
                    .hexz(&["info", &url, "--allow-restricted"])
                    .env_remove("HEXZ_ALLOW_RESTRICTED")
                    .output()
                    .unwrap();
                assert!(out.status.success());
                // pack --base with a URL: the child records the base's file name.
                let c2 = env.path("child2.hxz");
                env.ok(&[
                    "pack",
                    "--disk",
                    p(&env.path("child.raw")),
                    "--base",
                    &env.nginx.url("v/base.hxz"),
                    "-o",
                    p(&c2),
                    "--json",
                ]);
                env.nginx.put_file("v/child2.hxz", &c2);
                let out = env.ok(&["cat", &env.nginx.url("v/child2.hxz")]);
                assert!(out.stdout == *child);
                let small = std::fs::metadata(&c2).unwrap().len();
                assert!(small < 2 << 20, "thin child of a URL base is {small} bytes");
            }),
        ),
        (
            "second_pass_with_cache_dir_makes_no_request",
            Box::new(move || {
                let url = env.nginx.url("v/child.hxz");
                let cache = env.path("cache");
                let cd = p(&cache);
                let mut seen = 0;
                env.new_requests(&mut seen);
                let out = env.ok(&["cat", &url, "--cache-dir", cd]);
                assert!(out.stdout == *child);
                let first = env.new_requests(&mut seen);
                assert!(!first.is_empty());
                let out = env.ok(&["cat", &url, "--cache-dir", cd]);
                assert!(out.stdout == *child);
                let second = env.new_requests(&mut seen);
                assert!(second.is_empty(), "2nd pass made requests: {second:?}");
                let v = json(&env.ok(&["verify", &url, "--cache-dir", cd, "--json"]));
                assert_eq!(v["ok"], true);
                env.ok(&["info", &url, "--cache-dir", cd]);
                assert!(env.new_requests(&mut seen).is_empty());
                // HEXZ_CACHE_DIR works the same; a cap of 0 caches nothing.
                let out = env
                    .hexz(&["cat", &url])
                    .env("HEXZ_CACHE_DIR", cd)
                    .output()
                    .unwrap();
                assert!(out.status.success() && out.stdout == *child);
                assert!(env.new_requests(&mut seen).is_empty());
                // Two processes sharing a fresh cache: right bytes, each chunk fetched once.
                let shared = env.path("cache2");
                let kids: Vec<_> = (0..2)
                    .map(|_| {
                        env.hexz(&["cat", &url, "--cache-dir", p(&shared)])
                            .stdout(Stdio::piped())
                            .spawn()
                            .unwrap()
                    })
                    .collect();
                for k in kids {
                    let out = k.wait_with_output().unwrap();
                    assert!(out.status.success() && out.stdout == *child);
                }
                let both = env.new_requests(&mut seen);
                assert!(!both.is_empty());
                let out = env.ok(&["cat", &url, "--cache-dir", p(&shared)]);
                assert!(out.stdout == *child);
                assert!(env.new_requests(&mut seen).is_empty());
            }),
        ),
        (
            "push_and_pull_round_trip_with_parents",
            Box::new(move || {
                let url = format!("s3://{BUCKET}/dir/child.hxz");
                let out = env.ok(&["push", p(&ch), &url, "--with-parents", "--json"]);
                let v = json(&out);
                assert_eq!(v["archives"].as_array().map(Vec::len), Some(2), "{v}");
                let c = env.client();
                // Read both objects back through the S3 backend via the CLI.
                let out = env.ok(&["cat", &url]);
                assert!(out.stdout == *child, "cat s3:// returns the child's bytes");
                let out = env.ok(&["cat", &format!("s3://{BUCKET}/dir/base.hxz")]);
                assert!(out.stdout == *base);
                // Pull the chain back into a fresh directory.
                let dest = env.path("pulled");
                let out_child = dest.join("child.hxz");
                env.ok(&["pull", &url, "-o", p(&out_child), "--with-parents"]);
                assert!(std::fs::read(&out_child).unwrap() == std::fs::read(&ch).unwrap());
                assert!(
                    std::fs::read(dest.join("base.hxz")).unwrap() == std::fs::read(&b).unwrap()
                );
                // Pull from nginx, child alone (verified against the remote parent).
                let alone = env.path("alone.hxz");
                env.ok(&["pull", &env.nginx.url("v/child.hxz"), "-o", p(&alone)]);
                assert!(std::fs::read(&alone).unwrap() == std::fs::read(&ch).unwrap());
                // A damaged remote archive is not pulled: nothing appears locally.
                let mut bad = std::fs::read(&b).unwrap();
                let at = bad.len() / 2;
                bad[at] ^= 0xff;
                env.nginx.put("v/bad.hxz", &bad);
                let target = env.path("bad.hxz");
                let out = env
                    .hexz(&["pull", &env.nginx.url("v/bad.hxz"), "-o", p(&target)])
                    .output()
                    .unwrap();
                assert!(!out.status.success());
                assert!(!target.exists());
                let names: Vec<_> = std::fs::read_dir(env.dir.path())
                    .unwrap()
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.contains(".tmp"))
                    .collect();
                assert!(names.is_empty(), "debris: {names:?}");
                // push to an http URL is refused clearly.
                let out = env
                    .hexz(&["push", p(&b), &env.nginx.url("x.hxz")])
                    .output()
                    .unwrap();
                assert!(!out.status.success());
                assert!(String::from_utf8_lossy(&out.stderr).contains("s3://"));
                assert!(c.list_multipart_uploads("").unwrap().is_empty());
            }),
        ),
        (
            "pack_to_s3_streams_single_put_and_multipart",
            Box::new(move || {
                // Small: one PUT.
                let small = format!("s3://{BUCKET}/packed/small.hxz");
                env.ok(&["pack", "--disk", p(&env.path("base.raw")), "-o", &small]);
                assert!(env.ok(&["cat", &small]).stdout == *base);
                // Large (incompressible, > 2 parts): multipart with part 1 uploaded last.
                let mut big = vec![0u8; 21 << 20];
                common::Rng::new(13).fill(&mut big);
                let raw = env.path("big.raw");
                std::fs::write(&raw, &big).unwrap();
                let url = format!("s3://{BUCKET}/packed/big.hxz");
                env.ok(&["pack", "--disk", p(&raw), "-o", &url]);
                let out = env.ok(&["cat", &url]);
                assert!(out.stdout == big, "streamed archive reads back");
                let v = json(&env.ok(&["verify", &url, "--json"]));
                assert_eq!(v["ok"], true);
                // The same bytes as packing locally, apart from id and time: same size.
                let local = env.path("big.hxz");
                env.ok(&["pack", "--disk", p(&raw), "-o", p(&local)]);
                let pulled = env.path("big-pulled.hxz");
                env.ok(&["pull", &url, "-o", p(&pulled)]);
                assert_eq!(
                    std::fs::metadata(&pulled).unwrap().len(),
                    std::fs::metadata(&local).unwrap().len()
                );
                assert!(env.client().list_multipart_uploads("").unwrap().is_empty());
            }),
        ),
        (
            "tree_pack_to_s3_streams_and_reads_back",
            Box::new(move || {
                // A tree with a large incompressible file (several upload parts), small
                // files and a symlink, packed straight into the bucket.
                let src = env.path("tree-src");
                std::fs::create_dir_all(src.join("sub/empty")).unwrap();
                let mut big = vec![0u8; 19 << 20];
                common::Rng::new(15).fill(&mut big);
                std::fs::write(src.join("big.bin"), &big).unwrap();
                for i in 0..50 {
                    std::fs::write(src.join(format!("sub/f{i}.txt")), format!("file {i}\n"))
                        .unwrap();
                }
                std::os::unix::fs::symlink("sub/f1.txt", src.join("link")).unwrap();
                let url = format!("s3://{BUCKET}/trees/t.hxz");
                env.ok(&["pack", p(&src), "-o", &url]);
                let ls = env.ok(&["ls", &url]);
                assert_eq!(ls.stdout, b"big.bin\nlink\nsub\n");
                assert!(env.ok(&["cat", &url, "big.bin"]).stdout == big);
                assert_eq!(env.ok(&["cat", &url, "sub/f7.txt"]).stdout, b"file 7\n");
                let dst = env.path("tree-dst");
                env.ok(&["extract", &url, "-o", p(&dst)]);
                let diff = Command::new("diff")
                    .args(["-r", "--no-dereference", p(&src), p(&dst)])
                    .output()
                    .unwrap();
                assert!(
                    diff.status.success(),
                    "{}",
                    String::from_utf8_lossy(&diff.stdout)
                );
                assert_eq!(
                    std::fs::read_link(dst.join("link")).unwrap(),
                    Path::new("sub/f1.txt")
                );
                // A failing tree pack leaves no object and no open upload.
                let gone = format!("s3://{BUCKET}/trees/missing.hxz");
                let out = env
                    .hexz(&["pack", p(&env.path("no-such-dir")), "-o", &gone])
                    .output()
                    .unwrap();
                assert!(!out.status.success());
                assert!(!env
                    .hexz(&["info", &gone])
                    .output()
                    .unwrap()
                    .status
                    .success());
                assert!(env.client().list_multipart_uploads("").unwrap().is_empty());
            }),
        ),
        (
            "interrupted_streaming_upload_leaves_nothing",
            Box::new(move || {
                let url = format!("s3://{BUCKET}/cut/archive.hxz");
                let mut kid = env
                    .hexz(&["pack", "--disk", "-", "-o", &url])
                    .stdin(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap();
                let mut stdin = kid.stdin.take().unwrap();
                let mut data = vec![0u8; 26 << 20];
                common::Rng::new(14).fill(&mut data);
                std::io::Write::write_all(&mut stdin, &data).unwrap();
                // Wait until the multipart upload exists (part 2 is on its way).
                let c = env.client();
                let t = Instant::now();
                while c.list_multipart_uploads("cut/").unwrap().is_empty() {
                    assert!(t.elapsed() < Duration::from_secs(60), "no upload started");
                    std::thread::sleep(Duration::from_millis(50));
                }
                // SAFETY: sending SIGINT to our own child process.
                unsafe { libc::kill(kid.id() as i32, libc::SIGINT) };
                drop(stdin);
                let out = kid.wait_with_output().unwrap();
                assert!(!out.status.success(), "an interrupted pack fails");
                let err = String::from_utf8_lossy(&out.stderr);
                assert!(err.contains("cancel"), "{err}");
                assert!(
                    c.list_multipart_uploads("").unwrap().is_empty(),
                    "an orphaned multipart upload remains"
                );
                let out = env.hexz(&["info", &url]).output().unwrap();
                assert!(!out.status.success(), "no object appeared");
            }),
        ),
    ]);
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}
