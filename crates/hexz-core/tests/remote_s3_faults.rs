//! The S3 backend through a fault-injecting proxy in front of a real S3-compatible server
//! (SeaweedFS on loopback, checking SigV4 signatures): every retry is signed afresh and
//! accepted, reads return every byte right through dropped, cut, stalled and refused
//! responses, uploads survive cut and refused parts, and uploads that cannot finish (a
//! persistent failure, a server that takes the body at a trickle) fail within the
//! configured limits leaving neither an object nor an unfinished multipart upload.
//!
//! One test function (the environment variables it sets are process-wide) running cases.

mod common;
mod servers;

use hexz_core::ops::transfer::{self, TransferOptions};
use hexz_core::ops::{PackInput, PackOptions, PackSource};
use hexz_core::store::s3::{S3Backend, S3Client};
use hexz_core::store::{ReadRequest, RemoteOptions, StorageBackend};
use hexz_core::File;
use servers::archives::{self, test_remote};
use servers::proxy::{FaultProxy, ProxyFault};
use servers::{run_cases, Case, Seaweed, S3_KEY, S3_SECRET};
use std::sync::Arc;
use std::time::{Duration, Instant};

const BUCKET: &str = "hexz-faults";

fn client(endpoint: &str, remote: &RemoteOptions) -> Arc<S3Client> {
    servers::s3_client(endpoint, BUCKET, S3_SECRET, remote)
}

/// Options through the proxy: enough attempts that faults queued one after another never
/// exhaust one request's budget, whichever of the parallel requests takes them.
fn proxied() -> RemoteOptions {
    RemoteOptions {
        max_attempts: 10,
        max_retry_time: Duration::from_secs(60),
        ..test_remote()
    }
}

/// Whether `key` exists (read directly, not through the proxy).
fn exists(c: &Arc<S3Client>, key: &str) -> bool {
    match S3Backend::open_with_client(c.clone(), key) {
        Ok(_) => true,
        Err(e) if e.is_not_found() => false,
        Err(e) => panic!("probing {key}: {e}"),
    }
}

/// The whole object `key`, read directly.
fn fetch(c: &Arc<S3Client>, key: &str) -> Vec<u8> {
    let b = S3Backend::open_with_client(c.clone(), key).unwrap();
    let mut got = vec![0u8; b.len() as usize];
    b.read_batch(&mut [ReadRequest {
        offset: 0,
        buf: &mut got,
    }])
    .unwrap();
    got
}

/// A pack input reading `data` as the disk stream (as `pack` reads standard input).
fn piped(data: &[u8]) -> PackInput {
    PackInput {
        disk: Some(PackSource::Reader(Box::new(std::io::Cursor::new(
            data.to_vec(),
        )))),
        memory: None,
    }
}

fn random(n: usize, seed: u64) -> Vec<u8> {
    let mut v = vec![0u8; n];
    common::Rng::new(seed).fill(&mut v);
    v
}

#[test]
fn s3_through_faults() {
    let Some(srv) = Seaweed::start() else { return };
    let direct = client(&srv.endpoint(), &test_remote());
    srv.create_bucket(&direct);
    let proxy = FaultProxy::start(srv.s3_port);
    let via = client(&proxy.endpoint(), &proxied());
    let dir = tempfile::tempdir().unwrap();
    let all = archives::build(dir.path());
    for a in &all {
        direct
            .put_object(&a.name, &std::fs::read(&a.path).unwrap())
            .unwrap_or_else(|e| panic!("upload {}: {e}", a.name));
    }
    // A 20 MiB archive: pushed as a multipart upload (parts of 8 MiB).
    let big_data = random(20 << 20, 11);
    let (big, _) = common::pack_files(
        dir.path(),
        "big.hxz",
        Some(&big_data),
        None,
        &PackOptions::default(),
    );
    // `s3://` URLs opened by location (push, pack -o) go through the proxy.
    std::env::set_var("AWS_ENDPOINT_URL", proxy.endpoint());
    std::env::set_var("AWS_ACCESS_KEY_ID", S3_KEY);
    std::env::set_var("AWS_SECRET_ACCESS_KEY", S3_SECRET);
    std::env::set_var("AWS_REGION", "us-east-1");
    std::env::remove_var("AWS_PROFILE");
    std::env::remove_var("AWS_SESSION_TOKEN");

    let (p, d, v, all, big, big_data) = (&proxy, &direct, &via, &all, &big, &big_data);
    let mut cases: Vec<Case<'_>> = Vec::new();
    cases.push((
        "every archive reads right through dropped, cut, stalled and refused responses",
        Box::new(move || {
            for a in all {
                p.reset();
                p.push(
                    Some("GET"),
                    [
                        ProxyFault::DropMidBody,
                        ProxyFault::SlowDown,
                        ProxyFault::Pass,
                        ProxyFault::Status(500),
                        ProxyFault::Truncate,
                        ProxyFault::Pass,
                        ProxyFault::Status(503),
                        ProxyFault::Stall(Duration::from_secs(3)),
                    ],
                );
                let b = Arc::new(S3Backend::open_with_client(v.clone(), &a.name).unwrap());
                let f = File::open_backend(b, None, a.options(proxied()))
                    .unwrap_or_else(|e| panic!("open {}: {e}", a.name));
                a.check(&f);
                assert_eq!(p.pending(), 0, "{}: faults left unused", a.name);
                for fault in [ProxyFault::DropMidBody, ProxyFault::Truncate] {
                    assert_eq!(p.applied(&fault), 1, "{}: {fault:?}", a.name);
                }
            }
        }),
    ));
    cases.push((
        "a persistent 503 fails within the retry budget, naming the object",
        Box::new(move || {
            p.reset();
            p.always(Some("GET"), Some(ProxyFault::Status(503)));
            let opts = RemoteOptions {
                max_attempts: 3,
                ..test_remote()
            };
            let c = client(&p.endpoint(), &opts);
            let t = Instant::now();
            let e = S3Backend::open_with_client(c, &all[0].name).unwrap_err();
            let msg = e.to_string();
            assert!(e.is_transient(), "{msg}");
            assert!(msg.contains("503"), "{msg}");
            assert!(
                msg.contains(&format!("s3://{BUCKET}/{}", all[0].name)),
                "{msg}"
            );
            assert!(!msg.contains("X-Amz-Signature"), "signature leaked: {msg}");
            assert_eq!(p.log().len(), 3, "{:?}", p.log());
            assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
        }),
    ));
    cases.push((
        "upload parts are sent again after a cut request and a 500",
        Box::new(move || {
            p.reset();
            let data = random((5 << 20) + 77_777, 5);
            let up = v.create_multipart_upload("parts/obj.bin").unwrap();
            p.push(
                Some("PUT"),
                [
                    ProxyFault::ResetMidRequest,
                    ProxyFault::Status(500),
                    ProxyFault::Pass,
                    ProxyFault::SlowDown,
                ],
            );
            up.upload_part(1, &data[..5 << 20]).unwrap();
            up.upload_part(2, &data[5 << 20..]).unwrap();
            up.complete().unwrap();
            assert_eq!(p.pending(), 0);
            assert!(fetch(d, "parts/obj.bin") == data);
            assert!(d.list_multipart_uploads("parts/").unwrap().is_empty());
        }),
    ));
    cases.push((
        "push and pack -o upload through faults",
        Box::new(move || {
            p.reset();
            p.push(
                Some("PUT"),
                [
                    ProxyFault::ResetMidRequest,
                    ProxyFault::Status(503),
                    ProxyFault::DropMidBody,
                ],
            );
            p.push(Some("POST"), [ProxyFault::Status(500)]);
            let topts = TransferOptions {
                remote: proxied(),
                ..TransferOptions::default()
            };
            let url = format!("s3://{BUCKET}/pushed/big.hxz");
            let t = transfer::push(big, &url, &topts).unwrap();
            assert_eq!(t.len(), 1);
            assert_eq!(p.pending(), 0);
            assert!(fetch(d, "pushed/big.hxz") == std::fs::read(big).unwrap());

            p.reset();
            p.push(Some("PUT"), [ProxyFault::Status(500), ProxyFault::Truncate]);
            let url = format!("s3://{BUCKET}/pushed/packed.hxz");
            let input = piped(big_data);
            transfer::pack_to_url(input, &url, &PackOptions::default(), &topts, None).unwrap();
            assert_eq!(p.pending(), 0);
            let b = S3Backend::open_with_client(d.clone(), "pushed/packed.hxz").unwrap();
            let f = File::open_backend(Arc::new(b), None, Default::default()).unwrap();
            let got = f
                .read_at(hexz_core::SnapshotStream::Disk, 0, big_data.len())
                .unwrap();
            assert!(&got == big_data);
            assert!(d.list_multipart_uploads("pushed/").unwrap().is_empty());
        }),
    ));
    cases.push((
        "a push that keeps failing leaves no object and no unfinished upload",
        Box::new(move || {
            p.reset();
            // Part uploads fail for good (403 is not retried); the abort goes through.
            p.always(Some("PUT"), Some(ProxyFault::Status(403)));
            let topts = TransferOptions {
                remote: proxied(),
                ..TransferOptions::default()
            };
            let url = format!("s3://{BUCKET}/failed/big.hxz");
            let e = transfer::push(big, &url, &topts).unwrap_err();
            assert!(e.to_string().contains("403"), "{e}");
            assert!(
                p.log().iter().any(|(m, _)| m.starts_with("DELETE ")),
                "{:?}",
                p.log()
            );
            assert!(!exists(d, "failed/big.hxz"));
            assert!(d.list_multipart_uploads("failed/").unwrap().is_empty());

            // The same for a packer streaming its output up.
            let url = format!("s3://{BUCKET}/failed/packed.hxz");
            let input = piped(big_data);
            let e = transfer::pack_to_url(input, &url, &PackOptions::default(), &topts, None)
                .unwrap_err();
            assert!(e.to_string().contains("403"), "{e}");
            assert!(!exists(d, "failed/packed.hxz"));
            assert!(d.list_multipart_uploads("failed/").unwrap().is_empty());
        }),
    ));
    cases.push((
        "an upload taken at a trickle times out and leaves nothing",
        Box::new(move || {
            p.reset();
            // 1 KiB per 10 ms through a 4 KiB receive buffer: ~100 KiB/s, so 6 MiB would
            // take a minute; the client accepts no less than 1 MiB/s after its grace.
            p.always(
                Some("PUT"),
                Some(ProxyFault::SlowRead(Duration::from_millis(10))),
            );
            let opts = RemoteOptions {
                max_attempts: 2,
                min_send_rate: 1 << 20,
                ..test_remote()
            };
            let c = client(&p.endpoint(), &opts);
            let data = random(6 << 20, 9);
            let up = c.create_multipart_upload("slow/obj.bin").unwrap();
            let t = Instant::now();
            let e = up.upload_part(1, &data).unwrap_err();
            let took = t.elapsed();
            let msg = e.to_string();
            assert!(msg.contains("timed out"), "{msg}");
            assert!(
                msg.contains(&format!("s3://{BUCKET}/slow/obj.bin")),
                "{msg}"
            );
            // Two attempts of at most 2 s + 6 MiB / (1 MiB/s) each, and the backoff.
            assert!(took < Duration::from_secs(25), "{took:?}");
            assert_eq!(
                p.applied(&ProxyFault::SlowRead(Duration::from_millis(10))),
                2
            );
            drop(up);
            assert!(d.list_multipart_uploads("slow/").unwrap().is_empty());
            assert!(!exists(d, "slow/obj.bin"));
        }),
    ));
    run_cases(cases);
    drop(proxy);
}
