//! A real file-system image: an ext4 image built at test time from a copy of a system
//! directory, packed with LZ4, zstd and CDC, read back byte for byte, and checked to store
//! its free space as zero blocks. Needs `mkfs.ext4` (e2fsprogs); the test fails, it does
//! not skip, when the tool is missing.

mod common;

use common::*;
use hexz_core::format::Codec;
use hexz_core::ops::{self, CdcParams, PackInput, PackOptions, PackSource};
use hexz_core::{File, OpenOptions, SnapshotStream};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

const IMAGE_SIZE: u64 = 64 << 20;
const CONTENT_BUDGET: u64 = 12 << 20;

fn mkfs_ext4() -> PathBuf {
    for c in ["mkfs.ext4", "/sbin/mkfs.ext4", "/usr/sbin/mkfs.ext4"] {
        if Command::new(c).arg("-V").output().is_ok() {
            return PathBuf::from(c);
        }
    }
    panic!(
        "mkfs.ext4 was not found (tried PATH, /sbin, /usr/sbin): install e2fsprogs \
         (e.g. `apt-get install e2fsprogs`) to run the real ext4 image test"
    );
}

/// Copies regular files from `src` into `dst` (sorted, depth first) until `budget` bytes.
fn copy_tree(src: &Path, dst: &Path, budget: &mut u64) {
    let Ok(rd) = std::fs::read_dir(src) else {
        return;
    };
    let mut names: Vec<_> = rd.filter_map(|e| e.ok()).map(|e| e.path()).collect();
    names.sort();
    for p in names {
        if *budget == 0 {
            return;
        }
        let Ok(meta) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        let target = dst.join(p.file_name().unwrap());
        if meta.is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_tree(&p, &target, budget);
        } else if meta.is_file() && meta.len() <= *budget {
            if let Ok(bytes) = std::fs::read(&p) {
                std::fs::write(&target, &bytes).unwrap();
                *budget -= bytes.len() as u64;
            }
        }
    }
}

/// Builds a 64 MiB ext4 image of a copy of /usr/share/doc (or /usr/include), plus a
/// duplicated file and a large file of zeros.
fn build_image(dir: &Path) -> PathBuf {
    let mkfs = mkfs_ext4();
    let src = dir.join("tree");
    std::fs::create_dir_all(&src).unwrap();
    let mut budget = CONTENT_BUDGET;
    for root in [
        "/usr/share/doc",
        "/usr/include",
        "/usr/share/common-licenses",
    ] {
        copy_tree(
            Path::new(root),
            &src.join(root.trim_start_matches('/').replace('/', "_")),
            &mut budget,
        );
    }
    let copied = CONTENT_BUDGET - budget;
    assert!(
        copied > 1 << 20,
        "only {copied} bytes of system files to put in the image"
    );
    let mut blob = vec![0u8; 300_000];
    Rng::new(42).fill(&mut blob);
    std::fs::write(src.join("blob-a.bin"), &blob).unwrap();
    std::fs::write(src.join("blob-b.bin"), &blob).unwrap();
    std::fs::write(src.join("zeros.bin"), vec![0u8; 1 << 20]).unwrap();
    let img = dir.join("fs.img");
    let out = Command::new(&mkfs)
        .args(["-q", "-F", "-d"])
        .arg(&src)
        .arg(&img)
        .arg("64M")
        .output()
        .expect("running mkfs.ext4");
    assert!(
        out.status.success(),
        "mkfs.ext4 failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::metadata(&img).unwrap().len(), IMAGE_SIZE);
    img
}

#[test]
fn ext4_image_round_trips_and_stores_free_space_as_zero_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let img = build_image(dir.path());
    let raw = std::fs::read(&img).unwrap();
    assert_eq!(
        &raw[1024 + 56..1024 + 58],
        &[0x53, 0xef],
        "ext4 superblock magic"
    );
    let bs = 64 << 10;
    let zero_64k = raw.chunks(bs).filter(|c| c.iter().all(|&b| b == 0)).count() as u64;
    assert!(zero_64k > 0);

    let variants = [
        ("lz4", Codec::Lz4, 3, None),
        ("zstd", Codec::Zstd, 3, None),
        ("lz4-cdc", Codec::Lz4, 3, Some(CdcParams::default())),
    ];
    for (name, codec, level, cdc) in variants {
        let out = dir.path().join(format!("{name}.hxz"));
        let stats = ops::pack(
            PackInput {
                disk: Some(PackSource::Path(img.clone())),
                memory: None,
            },
            &out,
            &PackOptions {
                codec,
                level,
                cdc,
                ..PackOptions::default()
            },
            None,
        )
        .unwrap();
        let st = stats.disk.unwrap();
        let archive_len = std::fs::metadata(&out).unwrap().len();
        assert_eq!(st.input_bytes, IMAGE_SIZE);
        assert!(st.zero_blocks > 0, "{name}: no zero blocks");
        if cdc.is_none() {
            assert_eq!(st.blocks, IMAGE_SIZE / bs as u64, "{name}: blocks");
            assert_eq!(
                st.zero_blocks, zero_64k,
                "{name}: zero blocks in the archive vs all-zero 64 KiB blocks in the image"
            );
        }
        assert!(
            st.stored_bytes < IMAGE_SIZE / 2 && archive_len < IMAGE_SIZE / 2,
            "{name}: stored {} bytes, archive {archive_len} bytes for a {IMAGE_SIZE}-byte image",
            st.stored_bytes
        );
        assert!(
            st.dedup_blocks > 0 || cdc.is_some(),
            "{name}: the duplicated file"
        );

        // Extract through File reads (1 MiB chunks) and through the Read adapter.
        for mmap in [false, true] {
            let f = File::open_with(
                &out,
                OpenOptions {
                    mmap,
                    ..OpenOptions::default()
                },
            )
            .unwrap();
            let rec = f.master().stream(SnapshotStream::Disk).unwrap();
            assert_eq!(rec.zero_blocks, st.zero_blocks);
            let mut got = Vec::with_capacity(raw.len());
            let mut off = 0u64;
            while off < IMAGE_SIZE {
                let v = f.read_at(SnapshotStream::Disk, off, 1 << 20).unwrap();
                assert_eq!(v.len(), 1 << 20);
                got.extend_from_slice(&v);
                off += v.len() as u64;
            }
            assert!(got == raw, "{name} (mmap {mmap}): extracted image differs");
            let mut via_reader = Vec::new();
            f.reader(SnapshotStream::Disk)
                .unwrap()
                .read_to_end(&mut via_reader)
                .unwrap();
            assert!(via_reader == raw, "{name}: Read adapter output differs");
            let rep = ops::verify(&f, None).unwrap();
            assert_eq!(rep.bytes, IMAGE_SIZE);
            assert_eq!(rep.blocks, st.blocks);
        }
    }
}
