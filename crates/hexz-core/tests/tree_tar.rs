//! `pack --from-tar`: large files are deduplicated whole, as for a directory: a tar holding
//! two identical large files stores the content once (also past the in-memory hold, through
//! a temporary file), while a same-size file with one byte changed is stored again.

use hexz_core::api::FileTree;
use hexz_core::ops::tree::{pack_tar, TreePackOptions, TreePackStats};
use hexz_core::ops::PackOptions;
use hexz_core::File;

/// Incompressible deterministic bytes.
fn noise(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
}

fn tarball(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, name, *data).unwrap();
    }
    b.into_inner().unwrap()
}

fn pack(dir: &std::path::Path, name: &str, tar: Vec<u8>) -> (TreePackStats, File) {
    let out = dir.join(name);
    let opts = PackOptions {
        codec: hexz_core::format::Codec::Zstd,
        ..PackOptions::default()
    };
    let stats = pack_tar(
        Box::new(std::io::Cursor::new(tar)),
        &out,
        &opts,
        &TreePackOptions::default(),
        None,
    )
    .unwrap();
    (stats, File::open(&out).unwrap())
}

#[test]
fn tar_with_identical_large_files_stores_them_once() {
    let d = tempfile::tempdir().unwrap();
    // Sizes not a multiple of the block size: block dedup alone would store the last
    // partial block again. The 17 MiB pair is held in a temporary file, not in memory.
    let x = noise(1, 300_001);
    let mut z = x.clone();
    z[123_456] ^= 1;
    let big = noise(2, (17 << 20) + 12_345);
    let small = b"a small file between the large ones\n";
    let (dup, f) = pack(
        d.path(),
        "dup.hxz",
        tarball(&[
            ("x.bin", &x),
            ("s1.txt", small),
            ("y.bin", &x),
            ("z.bin", &z),
            ("big1", &big),
            ("s2.txt", b"other"),
            ("big2", &big),
        ]),
    );
    // The same content without the two repeats.
    let (once, _) = pack(
        d.path(),
        "once.hxz",
        tarball(&[
            ("x.bin", &x),
            ("s1.txt", small),
            ("z.bin", &z),
            ("big1", &big),
            ("s2.txt", b"other"),
        ]),
    );
    assert_eq!(dup.dedup_files, 2, "y.bin repeats x.bin, big2 repeats big1");
    let stored = |s: &TreePackStats| s.pack.disk.as_ref().unwrap().stored_bytes;
    assert!(
        stored(&dup) <= stored(&once) + 1024,
        "repeats stored again: {} vs {} stored bytes",
        stored(&dup),
        stored(&once)
    );
    let t = FileTree::open(&f).unwrap().expect("file table");
    let get = |p: &str| t.lookup(p).unwrap().expect(p);
    assert_eq!(get("y.bin").data_offset, get("x.bin").data_offset);
    assert_eq!(get("big2").data_offset, get("big1").data_offset);
    assert_ne!(get("z.bin").data_offset, get("x.bin").data_offset);
    for (p, want) in [
        ("x.bin", &x[..]),
        ("y.bin", &x),
        ("z.bin", &z),
        ("big1", &big),
        ("big2", &big),
        ("s1.txt", small),
    ] {
        assert_eq!(t.read_file(&get(p), 0, 64 << 20).unwrap(), want, "{p}");
    }
}
