//! The S3 backend against a real S3-compatible server that checks SigV4 signatures
//! (SeaweedFS on loopback).
//!
//! One test function (the environment variables it sets are process-wide) running cases
//! that each report: plain, CDC, encrypted, signed and thin archives read through
//! `s3://bucket/key` with every byte compared; opening costs at most two requests; a thin
//! child's parent is found under the child's key prefix; configuration from the environment
//! and from a shared credentials file with a profile; a wrong secret key and a wrong access
//! key give clear errors; an object replaced after opening is detected; uploads (single PUT,
//! multipart, and a dropped multipart upload that leaves nothing behind).

mod common;
mod servers;

use hexz_core::store::s3::{Credentials, S3Backend, S3Client, S3Config};
use hexz_core::store::{ReadRequest, StorageBackend};
use hexz_core::{Error, File, SnapshotStream};
use servers::archives::{self, test_remote};
use servers::{run_cases, Case, Seaweed, S3_KEY, S3_SECRET};
use std::sync::Arc;

const BUCKET: &str = "hexz-test";

fn client(endpoint: &str, secret: &str) -> Arc<S3Client> {
    servers::s3_client(endpoint, BUCKET, secret, &test_remote())
}

#[test]
fn s3_reads_uploads_and_checks() {
    let Some(srv) = Seaweed::start() else { return };
    let endpoint = srv.endpoint();
    let c = client(&endpoint, S3_SECRET);
    srv.create_bucket(&c);
    let dir = tempfile::tempdir().unwrap();
    let all = archives::build(dir.path());
    for a in &all {
        c.put_object(&a.name, &std::fs::read(&a.path).unwrap())
            .unwrap_or_else(|e| panic!("upload {}: {e}", a.name));
    }
    // The environment configures `s3://` URLs opened by location (what the CLI does).
    std::env::set_var("AWS_ENDPOINT_URL", &endpoint);
    std::env::set_var("AWS_ACCESS_KEY_ID", S3_KEY);
    std::env::set_var("AWS_SECRET_ACCESS_KEY", S3_SECRET);
    std::env::set_var("AWS_REGION", "us-east-1");
    std::env::remove_var("AWS_PROFILE");
    std::env::remove_var("AWS_SESSION_TOKEN");

    let mut cases: Vec<Case<'_>> = Vec::new();
    for a in &all {
        cases.push((
            a.name.as_str(),
            Box::new(move || {
                let url = format!("s3://{BUCKET}/{}", a.name);
                let f = File::open_location(&url, a.options(test_remote()))
                    .unwrap_or_else(|e| panic!("open {url}: {e}"));
                a.check(&f);
            }),
        ));
    }
    let (all_ref, c_ref, ep) = (&all, &c, endpoint.as_str());
    cases.push((
        "open costs at most two requests",
        Box::new(move || {
            let a = &all_ref[0];
            let b = Arc::new(S3Backend::open_with_client(c_ref.clone(), &a.name).unwrap());
            assert_eq!(b.requests(), 1);
            let f = File::open_backend(b.clone(), None, a.options(test_remote())).unwrap();
            assert!(b.requests() <= 2, "{} requests", b.requests());
            assert_eq!(b.len(), std::fs::metadata(&a.path).unwrap().len());
            assert!(b.identity().unwrap().starts_with("etag:"));
            assert_eq!(b.describe(), format!("s3://{BUCKET}/{}", a.name));
            a.check(&f);
        }),
    ));
    cases.push((
        "thin parent under the child's prefix",
        Box::new(move || {
            let b = S3Backend::open_with_client(c_ref.clone(), "chain/child.hxz").unwrap();
            assert_eq!(b.sibling_key("base.hxz").unwrap(), "chain/base.hxz");
            let p = b.open_relative("base.hxz").unwrap();
            assert_eq!(p.describe(), format!("s3://{BUCKET}/chain/base.hxz"));
            let b = S3Backend::open_with_client(c_ref.clone(), "thin.hxz").unwrap();
            assert_eq!(b.sibling_key("thinbase.hxz").unwrap(), "thinbase.hxz");
        }),
    ));
    cases.push((
        "wrong secret key",
        Box::new(move || {
            let bad = client(ep, "not-the-secret");
            let e = S3Backend::open_with_client(bad, &all_ref[0].name).unwrap_err();
            let msg = e.to_string();
            assert!(msg.contains("SignatureDoesNotMatch"), "{msg}");
            assert!(msg.contains("AWS_SECRET_ACCESS_KEY"), "{msg}");
            assert!(
                msg.contains(&format!("s3://{BUCKET}/{}", all_ref[0].name)),
                "{msg}"
            );
            assert!(!e.is_transient());
            assert!(!msg.contains("X-Amz-Signature"), "signature leaked: {msg}");
        }),
    ));
    cases.push((
        "wrong access key",
        Box::new(move || {
            let cfg = S3Config::custom(ep, "us-east-1", Some(Credentials::new("nobody", "x")));
            let bad = Arc::new(S3Client::new(BUCKET, &cfg, &test_remote()).unwrap());
            let e = S3Backend::open_with_client(bad, &all_ref[0].name).unwrap_err();
            let msg = e.to_string();
            assert!(
                msg.contains("403") || msg.contains("InvalidAccessKeyId"),
                "{msg}"
            );
            assert!(!e.is_transient());
        }),
    ));
    cases.push((
        "missing object",
        Box::new(move || {
            let e = S3Backend::open_with_client(c_ref.clone(), "nope.hxz").unwrap_err();
            assert!(e.is_not_found(), "{e}");
            assert!(e.to_string().contains("NoSuchKey"), "{e}");
        }),
    ));
    cases.push((
        "profile from a shared credentials file",
        Box::new(move || {
            let d = tempfile::tempdir().unwrap();
            let creds = d.path().join("credentials");
            std::fs::write(
                &creds,
                format!(
                    "[default]\naws_access_key_id = wrong\naws_secret_access_key = wrong\n\n\
                     [hexz]\naws_access_key_id = {S3_KEY}\naws_secret_access_key = {S3_SECRET}\n"
                ),
            )
            .unwrap();
            let cfg = d.path().join("config");
            std::fs::write(&cfg, format!("[profile hexz]\nendpoint_url = {ep}\n")).unwrap();
            let saved: Vec<(&str, Option<String>)> = [
                "AWS_ACCESS_KEY_ID",
                "AWS_SECRET_ACCESS_KEY",
                "AWS_ENDPOINT_URL",
            ]
            .into_iter()
            .map(|k| (k, std::env::var(k).ok()))
            .collect();
            for (k, _) in &saved {
                std::env::remove_var(k);
            }
            std::env::set_var("AWS_SHARED_CREDENTIALS_FILE", &creds);
            std::env::set_var("AWS_CONFIG_FILE", &cfg);
            std::env::set_var("AWS_PROFILE", "hexz");
            let r = File::open_location(
                &format!("s3://{BUCKET}/{}", all_ref[1].name),
                all_ref[1].options(test_remote()),
            );
            std::env::remove_var("AWS_PROFILE");
            std::env::remove_var("AWS_SHARED_CREDENTIALS_FILE");
            std::env::remove_var("AWS_CONFIG_FILE");
            for (k, v) in saved {
                if let Some(v) = v {
                    std::env::set_var(k, v);
                }
            }
            all_ref[1].check(&r.unwrap());
        }),
    ));
    cases.push((
        "replaced object is detected",
        Box::new(move || {
            let a = &all_ref[0];
            c_ref
                .put_object("replaced.hxz", &std::fs::read(&a.path).unwrap())
                .unwrap();
            let f = File::open_location(
                &format!("s3://{BUCKET}/replaced.hxz"),
                a.options(test_remote()),
            )
            .unwrap();
            c_ref
                .put_object("replaced.hxz", &std::fs::read(&all_ref[1].path).unwrap())
                .unwrap();
            let e = f
                .read_at(SnapshotStream::Disk, 0, a.disk.len())
                .unwrap_err();
            assert!(matches!(e, Error::ArchiveChanged { .. }), "{e}");
            assert!(
                e.to_string()
                    .contains(&format!("s3://{BUCKET}/replaced.hxz")),
                "{e}"
            );
        }),
    ));
    cases.push((
        "multipart upload",
        Box::new(move || {
            let mut data = vec![0u8; (5 << 20) + 123_457];
            common::Rng::new(7).fill(&mut data);
            let up = c_ref.create_multipart_upload("multi/obj.bin").unwrap();
            // Out of order, as a streaming packer may upload them.
            up.upload_part(2, &data[5 << 20..]).unwrap();
            up.upload_part(1, &data[..5 << 20]).unwrap();
            let etag = up.complete().unwrap();
            assert!(!etag.is_empty());
            let b = S3Backend::open_with_client(c_ref.clone(), "multi/obj.bin").unwrap();
            assert_eq!(b.len(), data.len() as u64);
            let mut got = vec![0u8; data.len()];
            let mut reqs = [ReadRequest {
                offset: 0,
                buf: &mut got,
            }];
            b.read_batch(&mut reqs).unwrap();
            assert!(got == data);
            assert!(c_ref.list_multipart_uploads("multi/").unwrap().is_empty());
        }),
    ));
    cases.push((
        "dropped multipart upload leaves nothing",
        Box::new(move || {
            let up = c_ref.create_multipart_upload("gone/obj.bin").unwrap();
            up.upload_part(1, &[7u8; 1000]).unwrap();
            assert_eq!(
                c_ref.list_multipart_uploads("gone/").unwrap(),
                vec!["gone/obj.bin".to_string()]
            );
            drop(up);
            assert!(c_ref.list_multipart_uploads("gone/").unwrap().is_empty());
            let e = S3Backend::open_with_client(c_ref.clone(), "gone/obj.bin").unwrap_err();
            assert!(e.is_not_found(), "{e}");
            // Completing with a missing part is refused before anything is sent, and the
            // upload is aborted.
            let up = c_ref.create_multipart_upload("gone/obj2.bin").unwrap();
            up.upload_part(2, &[7u8; 1000]).unwrap();
            let e = up.complete().unwrap_err();
            assert!(e.to_string().contains("part 1 is missing"), "{e}");
            assert!(c_ref.list_multipart_uploads("gone/").unwrap().is_empty());
            c_ref.put_object("gone/x", b"x").unwrap();
            c_ref.delete_object("gone/x").unwrap();
            assert!(S3Backend::open_with_client(c_ref.clone(), "gone/x")
                .unwrap_err()
                .is_not_found());
        }),
    ));
    run_cases(cases);
}
