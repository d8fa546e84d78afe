//! The HTTP backend against real servers on loopback.
//!
//! - nginx: plain, CDC, encrypted, signed and thin archives (a chain at the server root and
//!   one in a subdirectory) read through URLs, every byte compared; opening costs at most two
//!   requests (counted in nginx's access log); the parent of a thin child is fetched from the
//!   child's directory; an archive replaced on the server and a missing one give clear errors.
//! - The fault server ([`servers::fault`]): connections dropped mid-body, truncated bodies,
//!   500/503/429/SlowDown bursts, 200 instead of 206, wrong Content-Range and length, stalls
//!   past the read timeout, the object swapped midway (with and without If-Match support),
//!   redirects, 4xx never retried: each read returns the right bytes or a clear error, and
//!   returns (no hang).
//! - Restricted addresses are refused unless allowed; batches are coalesced; a forked child
//!   keeps reading through the parent's backend on connections of its own.

mod common;
mod servers;

use common::in_child;
use hexz_core::store::http::HttpBackend;
use hexz_core::store::{open_location, ReadRequest, RemoteOptions, StorageBackend};
use hexz_core::{Error, File, OpenOptions, SnapshotStream};
use servers::archives::{self, archive_of, file_bytes, test_remote, Archive};
use servers::fault::{Fault, FaultServer};
use servers::{run_cases, Case, Nginx};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn open_url(url: &str, a: &Archive) -> hexz_core::Result<File> {
    File::open_location(url, a.options(test_remote()))
}

#[test]
fn nginx_reads_every_archive_kind() {
    let Some(nginx) = Nginx::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let all = archives::build(dir.path());
    for a in &all {
        nginx.put_file(&a.name, &a.path);
    }
    let mut cases: Vec<Case<'_>> = Vec::new();
    for a in &all {
        let nginx = &nginx;
        cases.push((
            a.name.as_str(),
            Box::new(move || {
                let before = nginx.requests().len();
                let f = open_url(&nginx.url(&a.name), a)
                    .unwrap_or_else(|e| panic!("open {}: {e}", a.name));
                let log = nginx.requests();
                let opened = &log[before..];
                // The archive itself costs at most two requests; a thin child's parent
                // (opened from the child's directory) two more.
                let own: Vec<_> = opened
                    .iter()
                    .filter(|l| l.contains(&format!("/{} ", a.name)))
                    .collect();
                assert!(own.len() <= 2, "{}: open made {own:?}", a.name);
                if a.name.ends_with("thin.hxz") {
                    assert!(
                        opened.iter().any(|l| l.starts_with("GET /thinbase.hxz ")),
                        "parent not fetched from the server root: {opened:?}"
                    );
                }
                if a.name == "chain/child.hxz" {
                    assert!(
                        opened.iter().any(|l| l.starts_with("GET /chain/base.hxz ")),
                        "parent not fetched from the child's directory: {opened:?}"
                    );
                }
                a.check(&f);
            }),
        ));
    }
    let nginx_ref = &nginx;
    let all_ref = &all;
    cases.push((
        "open costs at most two requests",
        Box::new(move || {
            let a = &all_ref[0];
            let b = Arc::new(HttpBackend::open(&nginx_ref.url(&a.name), &test_remote()).unwrap());
            let before = nginx_ref.requests().len();
            let f = File::open_backend(b.clone(), None, OpenOptions::default()).unwrap();
            let after = nginx_ref.requests().len();
            assert!(b.requests() <= 2, "{} requests", b.requests());
            // HttpBackend::open made the first; File::open_backend at most one more.
            assert!(after - before <= 1, "{} more requests", after - before);
            assert_eq!(b.len(), std::fs::metadata(&a.path).unwrap().len());
            assert!(b.identity().unwrap().starts_with("etag:\""));
            assert!(b.is_remote());
            a.check(&f);
        }),
    ));
    cases.push((
        "wrong password over HTTP",
        Box::new(move || {
            let a = all_ref.iter().find(|a| a.password.is_some()).unwrap();
            let opts = OpenOptions {
                password: Some(hexz_core::algo::encryption::Password::new(b"nope".to_vec())),
                remote: test_remote(),
                ..OpenOptions::default()
            };
            let e = File::open_location(&nginx_ref.url(&a.name), opts).unwrap_err();
            assert!(matches!(e, Error::WrongPassword), "{e}");
        }),
    ));
    cases.push((
        "replaced archive is detected",
        Box::new(move || {
            let a = &all_ref[0];
            nginx_ref.put("replaced.hxz", &std::fs::read(&a.path).unwrap());
            let f = open_url(&nginx_ref.url("replaced.hxz"), a).unwrap();
            // Same bytes, other file: nginx's ETag (mtime and size) changes.
            let other = &all_ref[1];
            nginx_ref.put("replaced.hxz", &std::fs::read(&other.path).unwrap());
            let e = f
                .read_at(SnapshotStream::Disk, 0, a.disk.len())
                .unwrap_err();
            assert!(matches!(e, Error::ArchiveChanged { .. }), "{e}");
            let msg = e.to_string();
            assert!(msg.contains("archive changed on the server"), "{msg}");
            assert!(msg.contains(&nginx_ref.url("replaced.hxz")), "{msg}");
        }),
    ));
    cases.push((
        "missing archive is not found",
        Box::new(move || {
            let e = match open_location(&nginx_ref.url("nope.hxz"), &test_remote(), false) {
                Ok(_) => panic!("opened a missing archive"),
                Err(e) => e,
            };
            assert!(e.is_not_found(), "{e}");
            assert!(!e.is_transient());
            assert!(e.to_string().contains("404"), "{e}");
            assert!(e.to_string().contains("/nope.hxz"), "{e}");
        }),
    ));
    cases.push((
        "thin child with its parent missing",
        Box::new(move || {
            let a = all_ref.iter().find(|a| a.name == "thin.hxz").unwrap();
            nginx_ref.put("lonely/thin.hxz", &std::fs::read(&a.path).unwrap());
            let e = open_url(&nginx_ref.url("lonely/thin.hxz"), a).unwrap_err();
            let msg = e.to_string();
            assert!(msg.contains("thinbase.hxz"), "{msg}");
            assert!(
                msg.contains(&format!("127.0.0.1:{}/lonely/thinbase.hxz", nginx_ref.port)),
                "{msg}"
            );
        }),
    ));
    run_cases(cases);
}

/// HTTPS: nginx with a certificate from a throwaway CA. Trusting that CA (`ca_file`, what
/// `SSL_CERT_FILE` sets) reads every byte; with only the built-in roots the TLS handshake
/// fails with an error naming the URL and the certificate problem, and nothing is returned.
#[test]
fn https_with_a_private_ca() {
    let Some(nginx) = Nginx::start_tls() else {
        return;
    };
    let (_dir, a) = small_archive();
    nginx.put_file(&a.name, &a.path);
    let url = nginx.url(&a.name);
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    let trusted = RemoteOptions {
        ca_file: nginx.ca.clone(),
        ..test_remote()
    };
    let f = File::open_location(&url, a.options(trusted)).unwrap();
    a.check(&f);
    assert!(!nginx.requests().is_empty(), "the reads went to nginx");

    let e = File::open_location(&url, a.options(test_remote())).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains(&url), "{msg}");
    assert!(
        msg.to_lowercase().contains("certificate") || msg.contains("UnknownIssuer"),
        "{msg}"
    );

    // A CA file that is not PEM is refused up front, naming the file.
    let bad = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(bad.path(), b"not a certificate").unwrap();
    let e = File::open_location(
        &url,
        a.options(RemoteOptions {
            ca_file: Some(bad.path().to_path_buf()),
            ..test_remote()
        }),
    )
    .unwrap_err();
    assert!(
        e.to_string().contains(&bad.path().display().to_string()),
        "{e}"
    );
}

// ---------------------------------------------------------------------------------------------
// Fault server.

/// A small plain archive and its bytes, shared by the fault tests.
fn small_archive() -> (tempfile::TempDir, Archive) {
    archive_of(1_200_000)
}

fn fast_remote() -> RemoteOptions {
    RemoteOptions {
        read_timeout: Duration::from_millis(500),
        max_attempts: 3,
        max_retry_time: Duration::from_secs(10),
        ..test_remote()
    }
}

fn fault_setup() -> (tempfile::TempDir, Archive, FaultServer) {
    let (dir, a) = small_archive();
    let srv = FaultServer::start(std::fs::read(&a.path).unwrap());
    (dir, a, srv)
}

/// Opens the archive on `srv` as a backend (so reads bypass the block cache by design).
fn backend(srv: &FaultServer) -> hexz_core::Result<HttpBackend> {
    HttpBackend::open(&srv.url(), &fast_remote())
}

#[test]
fn fault_open_costs_at_most_two_requests() {
    let (_d, a, srv) = fault_setup();
    let f = File::open_location(&srv.url(), a.options(fast_remote())).unwrap();
    assert!(srv.requests() <= 2, "open made {:?}", srv.ranges());
    assert_eq!(srv.ranges()[0], "bytes=0-65535");
    a.check(&f);
}

#[test]
fn fault_server_errors_are_retried() {
    let (_d, a, srv) = fault_setup();
    srv.push([Fault::Status(500), Fault::Status(503)]);
    let opts = RemoteOptions {
        max_attempts: 4,
        ..fast_remote()
    };
    let b = HttpBackend::open(&srv.url(), &opts).unwrap();
    let raw = file_bytes(&a);
    srv.push([Fault::SlowDown, Fault::Status(429), Fault::Status(502)]);
    let mut buf = vec![0u8; 300_000];
    b.read_exact_at(100_000, &mut buf).unwrap();
    assert!(buf == raw[100_000..400_000]);
    assert_eq!(srv.requests(), 2 + 1 + 3 + 1);
}

#[test]
fn fault_client_errors_are_not_retried() {
    let (_d, _a, srv) = fault_setup();
    for (code, not_found) in [(404, true), (403, false), (400, false)] {
        let before = srv.requests();
        srv.push([Fault::Status(code)]);
        let e = backend(&srv).unwrap_err();
        assert_eq!(srv.requests() - before, 1, "{code} was retried");
        assert!(!e.is_transient(), "{e}");
        assert_eq!(e.is_not_found(), not_found, "{e}");
        let msg = e.to_string();
        assert!(msg.contains(&code.to_string()), "{msg}");
        assert!(msg.contains(&srv.url()), "{msg}");
    }
}

#[test]
fn fault_retries_are_bounded() {
    let (_d, _a, srv) = fault_setup();
    srv.always(Some(Fault::Status(503)));
    let e = backend(&srv).unwrap_err();
    assert!(e.is_transient(), "{e}");
    assert!(e.to_string().contains("gave up after 3 attempts"), "{e}");
    assert_eq!(srv.requests(), 3);
}

#[test]
fn fault_dropped_connection_resumes_from_missing_offset() {
    let (_d, a, srv) = fault_setup();
    let b = backend(&srv).unwrap();
    let raw = file_bytes(&a);
    srv.push([Fault::DropMidBody]);
    let mut buf = vec![0u8; 400_000];
    b.read_exact_at(200_000, &mut buf).unwrap();
    assert!(buf == raw[200_000..600_000]);
    let r = srv.ranges();
    assert_eq!(r[1], "bytes=200000-599999");
    // The retry asked only for what was missing.
    let resumed: u64 = r[2]
        .strip_prefix("bytes=")
        .and_then(|s| s.split('-').next())
        .and_then(|s| s.parse().ok())
        .unwrap();
    assert!(resumed > 200_000 && resumed < 600_000, "{r:?}");
}

#[test]
fn fault_truncated_body_resumes() {
    let (_d, a, srv) = fault_setup();
    // Truncated at open too.
    srv.push([Fault::Truncate]);
    let b = backend(&srv).unwrap();
    let raw = file_bytes(&a);
    srv.push([Fault::Truncate, Fault::Truncate]);
    let mut buf = vec![0u8; raw.len() - 70_000];
    b.read_exact_at(70_000, &mut buf).unwrap();
    assert!(buf == raw[70_000..]);
    let f = File::open_backend(Arc::new(b), None, OpenOptions::default()).unwrap();
    srv.push([Fault::Truncate]);
    a.check(&f);
}

#[test]
fn fault_200_instead_of_206_is_an_error() {
    let (_d, _a, srv) = fault_setup();
    srv.push([Fault::Whole200]);
    let e = backend(&srv).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("200") && msg.contains("206"), "{msg}");
    let b = backend(&srv).unwrap();
    srv.push([Fault::Whole200]);
    let mut buf = vec![0u8; 100_000];
    let e = b.read_exact_at(100_000, &mut buf).unwrap_err();
    assert!(e.to_string().contains("200 OK"), "{e}");
}

#[test]
fn fault_wrong_content_range_is_an_error() {
    let (_d, _a, srv) = fault_setup();
    let b = backend(&srv).unwrap();
    srv.push([Fault::WrongRange]);
    let mut buf = vec![0u8; 100_000];
    let e = b.read_exact_at(100_000, &mut buf).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("Content-Range 'bytes 100001-200000/") && msg.contains("100000-199999"),
        "{msg}"
    );
    srv.push([Fault::WrongLength]);
    let e = b.read_exact_at(100_000, &mut buf).unwrap_err();
    assert!(e.to_string().contains("Content-Length 99999"), "{e}");
}

#[test]
fn fault_stall_past_timeout_is_retried() {
    let (_d, a, srv) = fault_setup();
    let b = backend(&srv).unwrap();
    let raw = file_bytes(&a);
    srv.push([Fault::Stall(Duration::from_secs(3))]);
    let mut buf = vec![0u8; 100_000];
    b.read_exact_at(300_000, &mut buf).unwrap();
    assert!(buf == raw[300_000..400_000]);
    assert_eq!(srv.requests(), 3);
}

#[test]
fn fault_stalled_server_gives_up() {
    let (_d, _a, srv) = fault_setup();
    let b = backend(&srv).unwrap();
    srv.always(Some(Fault::Stall(Duration::from_secs(5))));
    let mut buf = vec![0u8; 100_000];
    let e = b.read_exact_at(300_000, &mut buf).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("timed out"), "{msg}");
    assert!(msg.contains("gave up after 3 attempts"), "{msg}");
}

#[test]
fn fault_swapped_object_is_detected() {
    for honor in [true, false] {
        let (_d, a, srv) = fault_setup();
        srv.honor_if_match(honor);
        let f = File::open_location(&srv.url(), a.options(fast_remote())).unwrap();
        let mut other = file_bytes(&a);
        other[70_000..80_000].fill(0xAB);
        srv.push([Fault::Swap(other)]);
        let e = common::read_all(&f, SnapshotStream::Disk).unwrap_err();
        assert!(
            matches!(e, Error::ArchiveChanged { .. }),
            "honor={honor}: {e}"
        );
        let msg = e.to_string();
        assert!(msg.contains(&srv.url()), "{msg}");
        if honor {
            assert!(msg.contains("412"), "{msg}");
        } else {
            assert!(msg.contains("ETag \"gen-0\" -> \"gen-1\""), "{msg}");
        }
    }
}

/// A 206 with the right headers and length but a flipped byte: only the block's checksum can
/// tell. The block is fetched once more and the read returns the right bytes; an archive
/// damaged on the server itself is refused with an error naming the block.
#[test]
fn fault_flipped_body_byte_is_fetched_again() {
    let (_d, a, srv) = fault_setup();
    let opts = OpenOptions {
        cache_bytes: 0,
        ..a.options(fast_remote())
    };
    let f = File::open_location(&srv.url(), opts.clone()).unwrap();
    let before = srv.requests();
    srv.push([Fault::FlipByte]);
    let got = f.read_at(SnapshotStream::Disk, 300_000, 200_000).unwrap();
    assert!(got == a.disk[300_000..500_000]);
    assert_eq!(srv.requests() - before, 2, "{:?}", srv.ranges());

    let mut damaged = file_bytes(&a);
    let e = File::open(&a.path)
        .unwrap()
        .entries(SnapshotStream::Disk)
        .map(|e| e.unwrap())
        .find(|e| e.logical_offset <= 400_000 && 400_000 < e.logical_end())
        .unwrap();
    damaged[(e.stored_offset + e.stored_len as u64 / 2) as usize] ^= 0x01;
    let bad = FaultServer::start(damaged);
    let f = File::open_location(&bad.url(), opts).unwrap();
    let msg = f
        .read_at(SnapshotStream::Disk, 300_000, 200_000)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("corrupt block"), "{msg}");
}

/// An archive smaller than the open request is read whole by it and served from memory; a
/// byte damaged in that response is fetched again from the server, not from the kept copy.
#[test]
fn fault_flipped_byte_in_the_open_request_is_fetched_again() {
    let (_d, a) = archive_of(40_000);
    let raw = file_bytes(&a);
    assert!(
        raw.len() < 65_536,
        "the open request holds all {} bytes",
        raw.len()
    );
    let srv = FaultServer::start(raw);
    // The flipped byte is the middle one of the archive: inside the data blocks.
    srv.push([Fault::FlipByte]);
    let f = File::open_location(&srv.url(), a.options(fast_remote())).unwrap();
    assert_eq!(srv.requests(), 1, "{:?}", srv.ranges());
    assert!(f.read_at(SnapshotStream::Disk, 0, a.disk.len()).unwrap() == a.disk);
    assert_eq!(srv.requests(), 2, "{:?}", srv.ranges());
}

/// `verify` over a URL fetches a block damaged in transit once more (off the decode pool)
/// and passes; the archive is fine.
#[test]
fn fault_flipped_byte_during_verify_is_fetched_again() {
    let (_d, a, srv) = fault_setup();
    let f = File::open_location(&srv.url(), a.options(fast_remote())).unwrap();
    let before = srv.requests();
    srv.push([Fault::FlipByte]);
    let report = hexz_core::ops::verify::verify(&f, None).unwrap();
    assert_eq!(report.bytes, a.disk.len() as u64);
    assert_eq!(srv.requests() - before, 2, "{:?}", srv.ranges());
}

/// A chunk damaged on its way into the shared disk cache is not kept: the block's failed
/// check drops the entry and fetches it again, so neither this process nor a later one
/// reading the same cache directory is served the damaged copy.
#[test]
fn fault_flipped_byte_does_not_poison_the_disk_cache() {
    let (d, a, srv) = fault_setup();
    let remote = RemoteOptions {
        cache_dir: Some(d.path().join("cache")),
        ..fast_remote()
    };
    let opts = OpenOptions {
        cache_bytes: 0,
        ..a.options(remote)
    };
    // Opening reads the whole (small) object into the cache: its second request, the one
    // after the header, gets a flipped byte in the middle of the data blocks.
    srv.push([Fault::Pass, Fault::FlipByte]);
    let f = File::open_location(&srv.url(), opts.clone()).unwrap();
    assert_eq!(srv.requests(), 2, "{:?}", srv.ranges());
    let len = a.disk.len();
    assert!(f.read_at(SnapshotStream::Disk, 0, len).unwrap() == a.disk);
    // One more request: the damaged chunk, fetched again.
    assert_eq!(srv.requests(), 3, "{:?}", srv.ranges());
    assert!(f.read_at(SnapshotStream::Disk, 0, len).unwrap() == a.disk);
    // A new process on the same cache directory reads it all from the cache.
    let g = File::open_location(&srv.url(), opts).unwrap();
    assert!(g.read_at(SnapshotStream::Disk, 0, len).unwrap() == a.disk);
    assert_eq!(srv.requests(), 3, "{:?}", srv.ranges());
}

/// A server that trickles a body (a byte every 100 ms, so no read times out) or its headers
/// (without end) cannot hold a read for hours: an attempt too slow is cut and resumed, and
/// a server that stays that slow gives a clear error within the retry budget.
#[test]
fn fault_trickling_server_cannot_hold_a_read() {
    let (_d, a, srv) = fault_setup();
    let srv = Arc::new(srv);
    let opts = RemoteOptions {
        max_retry_time: Duration::from_secs(3),
        ..fast_remote()
    };
    let b = Arc::new(HttpBackend::open(&srv.url(), &opts).unwrap());
    let raw = file_bytes(&a);
    // Once: the slow attempt is cut and the rest resumed at full speed.
    srv.push([Fault::Trickle(Duration::from_millis(100))]);
    let (b2, expect) = (b.clone(), raw[300_000..400_000].to_vec());
    common::within(20, move || {
        let mut buf = vec![0u8; 100_000];
        b2.read_exact_at(300_000, &mut buf).unwrap();
        assert!(buf == expect);
    });
    for (fault, why) in [
        (Fault::Trickle(Duration::from_millis(100)), "bytes/s"),
        (Fault::TrickleHead(Duration::from_millis(100)), "timed out"),
    ] {
        srv.always(Some(fault.clone()));
        let b2 = b.clone();
        let msg = common::within(30, move || {
            let mut buf = vec![0u8; 100_000];
            b2.read_exact_at(300_000, &mut buf).unwrap_err().to_string()
        });
        assert!(msg.contains(why), "{fault:?}: {msg}");
        assert!(msg.contains("gave up after"), "{fault:?}: {msg}");
        assert!(msg.contains("GET bytes=300"), "{fault:?}: {msg}");
    }
    srv.always(None);
}

/// Seeded random faults (every kind but a swap) in front of 4 threads reading random ranges
/// through one `File` with a tiny cache: each read returns the right bytes or an error that
/// names the URL or the block, and the whole run finishes (no hang).
#[test]
fn fault_storm_reads_right_bytes_or_clear_errors() {
    let (_d, a, srv) = fault_setup();
    let srv = Arc::new(srv);
    let url = srv.url();
    let opts = OpenOptions {
        cache_bytes: 64 << 10,
        ..a.options(fast_remote())
    };
    let f = File::open_location(&url, opts).unwrap();
    let a = Arc::new(a);
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let start = std::time::Instant::now();
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let (f, a, srv, url) = (f.clone(), a.clone(), srv.clone(), url.clone());
            let (ok, failed) = (ok.clone(), failed.clone());
            std::thread::spawn(move || {
                let mut rng = common::Rng::new(1000 + t);
                for _ in 0..40 {
                    let fault = match rng.below(12) {
                        0 => Some(Fault::Status(500)),
                        1 => Some(Fault::Status(503)),
                        2 => Some(Fault::SlowDown),
                        3 => Some(Fault::DropMidBody),
                        4 => Some(Fault::Truncate),
                        5 => Some(Fault::Whole200),
                        6 => Some(Fault::WrongRange),
                        7 => Some(Fault::WrongLength),
                        8 => Some(Fault::FlipByte),
                        9 if rng.below(4) == 0 => Some(Fault::Stall(Duration::from_millis(700))),
                        _ => None,
                    };
                    srv.push(fault);
                    let off = rng.below(a.disk.len() as u64);
                    let len = 1 + rng.below(300_000) as usize;
                    let end = (off as usize + len).min(a.disk.len());
                    match f.read_at(SnapshotStream::Disk, off, len) {
                        Ok(got) => {
                            assert!(
                                got == a.disk[off as usize..end],
                                "read {off}+{len}: wrong bytes"
                            );
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            let msg = e.to_string();
                            assert!(
                                msg.contains(&url) || msg.contains("block"),
                                "read {off}+{len}: unclear error: {msg}"
                            );
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    assert_eq!(ok + failed, 160);
    // Most faults are retried away; the non-transient ones fail their read.
    assert!(
        ok >= 80,
        "only {ok} of 160 reads succeeded ({failed} failed)"
    );
    assert!(
        start.elapsed() < Duration::from_secs(120),
        "took {:?}",
        start.elapsed()
    );
    // The archive still reads back whole once the faults stop.
    srv.clear();
    a.check(&f);
}

#[test]
fn fault_redirect_is_followed() {
    let (_d, a, srv) = fault_setup();
    srv.push([Fault::Redirect("/elsewhere/a.hxz".into())]);
    let f = File::open_location(&srv.url(), a.options(fast_remote())).unwrap();
    a.check(&f);
}

#[test]
fn restricted_addresses_are_refused_by_default() {
    let (_d, _a, srv) = fault_setup();
    let e = HttpBackend::open(&srv.url(), &RemoteOptions::default()).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("restricted address 127.0.0.1 (loopback)"),
        "{msg}"
    );
    assert!(msg.contains("HEXZ_ALLOW_RESTRICTED=1"), "{msg}");
    assert!(!e.is_transient());
    assert_eq!(srv.requests(), 0, "a request reached the server");
    let e = HttpBackend::open(
        &format!("http://[::ffff:127.0.0.1]:{}/a.hxz", srv.port),
        &RemoteOptions::default(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("restricted address"), "{e}");
    assert_eq!(srv.requests(), 0);
    // Allowed explicitly, it works.
    let o = RemoteOptions {
        allow_restricted: true,
        ..RemoteOptions::default()
    };
    HttpBackend::open(&srv.url(), &o).unwrap();
}

/// The first and last byte of a `bytes=A-B` range header.
#[test]
fn batches_are_coalesced_and_parallel() {
    let (_d, a, srv) = fault_setup();
    let b = backend(&srv).unwrap();
    let raw = file_bytes(&a);
    let before = srv.requests();
    // 64 neighbouring 4 KiB ranges with small gaps: one request.
    let mut bufs: Vec<Vec<u8>> = (0..64).map(|_| vec![0u8; 4096]).collect();
    let offs: Vec<u64> = (0..64).map(|i| 100_000 + i * 5000).collect();
    let mut reqs: Vec<ReadRequest<'_>> = bufs
        .iter_mut()
        .zip(&offs)
        .map(|(buf, &offset)| ReadRequest { offset, buf })
        .collect();
    b.read_batch(&mut reqs).unwrap();
    assert_eq!(srv.requests() - before, 1);
    for (buf, &o) in bufs.iter().zip(&offs) {
        assert!(buf[..] == raw[o as usize..o as usize + 4096]);
    }
    // Far-apart ranges: one request each (fetched in parallel), plus reads inside the
    // first 64 KiB served from what the open request fetched.
    let before = srv.requests();
    let mut bufs: Vec<Vec<u8>> = (0..4).map(|_| vec![0u8; 1000]).collect();
    let offs = [10u64, 70_000, 1_150_000, 1_000];
    let mut reqs: Vec<ReadRequest<'_>> = bufs
        .iter_mut()
        .zip(&offs)
        .map(|(buf, &offset)| ReadRequest { offset, buf })
        .collect();
    // 70_000 and 1_150_000 are more than the read-through gap apart.
    b.read_batch(&mut reqs).unwrap();
    assert_eq!(srv.requests() - before, 2);
    for (buf, &o) in bufs.iter().zip(&offs) {
        assert!(buf[..] == raw[o as usize..o as usize + 1000]);
    }
    // Past the end: an error, no request.
    let mut buf = vec![0u8; 10];
    let e = b.read_exact_at(raw.len() as u64 - 5, &mut buf).unwrap_err();
    assert!(e.to_string().contains("past the end"), "{e}");
}

#[test]
fn fork_while_other_threads_make_requests() {
    // Two threads of the parent read through the backend nonstop (its agent and connection
    // pool in use all the time) while the main thread forks; each child reads through the
    // same backend. A lock inherited in its held state would hang a child (SIGALRM after
    // 60 s fails the test).
    let (_d, a, srv) = fault_setup();
    let b = backend(&srv).unwrap();
    let raw = file_bytes(&a);
    let len = raw.len() as u64;
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        for t in 0..2u64 {
            let (b, raw, stop) = (&b, &raw, &stop);
            s.spawn(move || {
                let mut i = t;
                let mut buf = vec![0u8; 20_000];
                while !stop.load(Ordering::Relaxed) {
                    let off = (i * 70_001) % (len - 20_000);
                    b.read_exact_at(off, &mut buf).unwrap();
                    assert!(buf[..] == raw[off as usize..][..20_000]);
                    i += 2;
                }
            });
        }
        for i in 0..20u64 {
            let off = (i * 90_001) % (len - 50_000);
            let code = in_child(|| {
                let mut buf = vec![0u8; 50_000];
                match b.read_exact_at(off, &mut buf) {
                    Ok(()) if buf[..] == raw[off as usize..][..50_000] => 0,
                    _ => 2,
                }
            });
            assert_eq!(code, 0, "fork {i}: the child failed to read (code {code})");
        }
        stop.store(true, Ordering::Relaxed);
    });
}

#[test]
fn forked_child_keeps_reading() {
    // As PyTorch's DataLoader does: read in the parent (the pool now holds a connection),
    // fork, read in the child. The child must not share the parent's connections.
    let (_d, a, srv) = fault_setup();
    let b = backend(&srv).unwrap();
    let raw = file_bytes(&a);
    let mut buf = vec![0u8; 200_000];
    b.read_exact_at(100_000, &mut buf).unwrap();
    assert!(buf == raw[100_000..300_000]);
    let conns = srv.connections();
    // SAFETY: the child only reads through the backend and leaves with _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let mut ok = true;
        for i in 0..5u64 {
            let off = 300_000 + i * 150_000;
            let mut buf = vec![0u8; 120_000];
            ok &= b.read_exact_at(off, &mut buf).is_ok()
                && buf == raw[off as usize..off as usize + 120_000];
        }
        // SAFETY: ends the child without running the parent's destructors or test harness.
        unsafe { libc::_exit(if ok { 0 } else { 1 }) };
    }
    let mut status = 0;
    // SAFETY: waiting for our own child.
    let r = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(r, pid);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "the child read wrong bytes or failed (status {status})"
    );
    assert!(
        srv.connections() > conns,
        "the child reused the parent's pooled connection"
    );
    // And the parent still reads correctly on its own connections.
    let mut buf = vec![0u8; 200_000];
    b.read_exact_at(900_000, &mut buf).unwrap();
    assert!(buf == raw[900_000..1_100_000]);
}
