//! Writes the seed corpus of the fuzz targets (`fuzz/corpus/<target>/`): small real archives
//! of every kind and the structures cut out of them, so libFuzzer starts from valid inputs
//! and mutates its way into the parsers instead of stopping at the first magic check.
//!
//! `cargo run -p hexz-core --example fuzz_corpus -- fuzz/corpus` (what `scripts/fuzz.sh`
//! runs when the corpus is missing). Deterministic contents apart from random archive ids,
//! salts and nonces.

use hexz_core::algo::compression::compressor_for;
use hexz_core::algo::encryption::{Kdf, Password};
use hexz_core::format::index::{PAGE_REF_SIZE, STREAM_RECORD_SIZE};
use hexz_core::format::{Codec, HEADER_SIZE};
use hexz_core::ops::pack::EncryptOptions;
use hexz_core::ops::{pack, CdcParams, PackInput, PackOptions, PackSource};
use std::path::{Path, PathBuf};

/// The fixed Ed25519 seed the `signature` target checks against (its public key).
const SIGNING_SEED: [u8; 32] = [7; 32];
/// The password of the encrypted seeds (the `encrypted_open` target tries it and others).
const PASSWORD: &[u8] = b"fuzz";

fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut v = Vec::with_capacity(len);
    while v.len() < len {
        let i = v.len();
        let b = match (i / 4096) % 4 {
            0 => 0,
            1 => {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            }
            2 => (i % 7) as u8,
            _ => (i / 3) as u8,
        };
        v.push(b);
    }
    v
}

fn pack_to(dir: &Path, name: &str, disk: &[u8], memory: Option<&[u8]>, o: &PackOptions) -> PathBuf {
    let d = dir.join(format!("{name}.disk"));
    std::fs::write(&d, disk).unwrap();
    let m = memory.map(|m| {
        let p = dir.join(format!("{name}.mem"));
        std::fs::write(&p, m).unwrap();
        PackSource::Path(p)
    });
    let out = dir.join(name);
    let input = PackInput {
        disk: Some(PackSource::Path(d)),
        memory: m,
    };
    pack(input, &out, o, None).unwrap_or_else(|e| panic!("packing {name}: {e}"));
    out
}

fn write(root: &Path, target: &str, name: &str, bytes: &[u8]) {
    let d = root.join(target);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join(name), bytes).unwrap();
}

fn le_u32(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
}
fn le_u64(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().unwrap())
}

#[allow(clippy::vec_init_then_push)]
fn main() {
    let root = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "fuzz/corpus".into()),
    );
    let tmp = std::env::temp_dir().join(format!("hexz-fuzz-corpus-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let small = PackOptions {
        block_size: 4096,
        threads: 1,
        ..PackOptions::default()
    };
    let disk = data(5 * 4096 + 123, 1);
    let mem = data(2 * 4096, 2);

    let mut plain = Vec::new();
    plain.push(("lz4", pack_to(&tmp, "lz4.hxz", &disk, Some(&mem), &small)));
    plain.push((
        "zstd",
        pack_to(
            &tmp,
            "zstd.hxz",
            &disk,
            None,
            &PackOptions {
                codec: Codec::Zstd,
                level: 3,
                ..small.clone()
            },
        ),
    ));
    plain.push((
        "cdc",
        pack_to(
            &tmp,
            "cdc.hxz",
            &data(40_000, 3),
            None,
            &PackOptions {
                cdc: Some(CdcParams {
                    min: 1024,
                    avg: 4096,
                    max: 16384,
                }),
                ..small.clone()
            },
        ),
    ));
    plain.push((
        "none",
        pack_to(
            &tmp,
            "none.hxz",
            &disk[..4096 * 2],
            None,
            &PackOptions {
                codec: Codec::None,
                ..small.clone()
            },
        ),
    ));
    let signed = pack_to(&tmp, "signed.hxz", &disk, None, &small);
    hexz_core::ops::rewrite::sign(
        &signed,
        &SIGNING_SEED,
        None,
        hexz_core::ops::rewrite::Rewrite::Copy,
    )
    .unwrap();
    plain.push(("signed", signed));

    for (name, p) in &plain {
        let a = std::fs::read(p).unwrap();
        write(&root, "open_read", name, &a);
        write(&root, "open_read_fixed", name, &a);
        write(&root, "signature", name, &a);
        write(&root, "header", name, &a[..HEADER_SIZE]);
        let mo = le_u64(&a, 56) as usize;
        let ml = le_u32(&a, 64) as usize;
        let master = &a[mo..mo + ml];
        write(&root, "master_index", name, master);
        // Every index page, as its stream id byte followed by the page.
        let nstreams = u16::from_le_bytes([master[4], master[5]]) as usize;
        let mut pos = 16 + nstreams * STREAM_RECORD_SIZE;
        for s in 0..nstreams {
            let rec = &master[16 + s * STREAM_RECORD_SIZE..];
            let stream_id = rec[0];
            for p in 0..le_u32(rec, 4) as usize {
                let off = le_u64(master, pos) as usize;
                let len = le_u32(master, pos + 16) as usize;
                let mut page = vec![stream_id];
                page.extend_from_slice(&a[off..off + len]);
                write(&root, "index_page", &format!("{name}-{s}-{p}"), &page);
                pos += PAGE_REF_SIZE;
            }
        }
    }

    // Codec decoder seeds: selector byte (0 none, 1 lz4, 2 zstd) + stored bytes.
    for (i, codec) in [Codec::None, Codec::Lz4, Codec::Zstd]
        .into_iter()
        .enumerate()
    {
        let Ok(c) = compressor_for(codec, 3) else {
            continue;
        };
        for (j, len) in [1usize, 100, 4096, 9000].into_iter().enumerate() {
            let mut out = Vec::new();
            c.compress(&disk[4096..4096 + len], &mut out).unwrap();
            let mut seed = vec![i as u8];
            seed.extend_from_slice(&(len as u32).to_le_bytes());
            seed.extend_from_slice(&out);
            write(&root, "codec_decode", &format!("{codec}-{j}"), &seed);
        }
    }

    // Thin chains: u32 LE parent length, the parent, then the child.
    let parent = pack_to(&tmp, "parent.hxz", &disk, None, &small);
    let mut disk2 = disk.clone();
    disk2[4096 * 3..4096 * 3 + 50].fill(0xab);
    let child = pack_to(
        &tmp,
        "child.hxz",
        &disk2,
        None,
        &PackOptions {
            base: Some(parent.clone()),
            ..small.clone()
        },
    );
    let (pb, cb) = (
        std::fs::read(&parent).unwrap(),
        std::fs::read(&child).unwrap(),
    );
    let mut chain = (pb.len() as u32).to_le_bytes().to_vec();
    chain.extend_from_slice(&pb);
    chain.extend_from_slice(&cb);
    write(&root, "thin_chain", "lz4", &chain);

    // Encrypted archives with a cheap key derivation (so the target runs fast).
    {
        let enc = PackOptions {
            encryption: Some(EncryptOptions {
                password: Password::new(PASSWORD),
                kdf: Kdf::Argon2id {
                    m_kib: 8,
                    t: 1,
                    p: 1,
                },
            }),
            ..small.clone()
        };
        let e = pack_to(&tmp, "enc.hxz", &disk, Some(&mem), &enc);
        write(&root, "encrypted_open", "lz4", &std::fs::read(&e).unwrap());
        let ez = pack_to(
            &tmp,
            "encz.hxz",
            &disk,
            None,
            &PackOptions {
                codec: Codec::Zstd,
                ..enc.clone()
            },
        );
        write(
            &root,
            "encrypted_open",
            "zstd",
            &std::fs::read(&ez).unwrap(),
        );
    }

    tree_seeds(&root, &tmp, &small);

    // CDC chunker / packer round trip: raw input bytes.
    write(&root, "cdc_pack", "mixed", &data(20_000, 4));
    write(&root, "cdc_pack", "zeros", &[0u8; 9000]);

    std::fs::remove_dir_all(&tmp).unwrap();
    eprintln!("seed corpus written to {}", root.display());
}

/// Sets extended attribute `name` on `p` (no error if the file system refuses).
fn set_xattr(p: &Path, name: &str, value: &[u8]) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
    let n = std::ffi::CString::new(name).unwrap();
    // SAFETY: valid NUL-terminated strings and a valid buffer.
    unsafe {
        libc::lsetxattr(
            c.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        ) == 0
    }
}

/// Plain pages of a file table reachable from `r` (stored in `a`), depth first.
fn tree_pages(a: &[u8], r: &hexz_core::format::tree::TreePageRef, out: &mut Vec<Vec<u8>>) {
    use hexz_core::format::tree::TreePage;
    let stored = &a[r.offset as usize..r.offset as usize + r.stored_len as usize];
    let mut plain = vec![0u8; r.plain_len as usize];
    compressor_for(r.codec, 3)
        .unwrap()
        .decompress_into(stored, &mut plain)
        .unwrap();
    let page = TreePage::decode(&plain, plain[4], "seed page").unwrap();
    out.push(plain);
    if let TreePage::Interior { children, .. } = page {
        for c in &children {
            tree_pages(a, &c.page, out);
        }
    }
}

/// `file_table` seeds: small tree archives (regular files, a symlink, a hard link, an empty
/// directory, a FIFO, extended attributes; LZ4, stored, encrypted; a two-level table with
/// Zstandard), and the plain pages and file table headers cut out of the unencrypted ones.
fn tree_seeds(root: &Path, tmp: &Path, small: &PackOptions) {
    use hexz_core::format::tree::{EntryKind, TreeEntry, TreeHeader};
    use hexz_core::ops::tree::{pack_entries, pack_tree, TreePackOptions};
    use std::os::unix::fs::PermissionsExt;
    let src = tmp.join("tree-src");
    std::fs::create_dir_all(src.join("dir/sub")).unwrap();
    std::fs::create_dir_all(src.join("empty")).unwrap();
    std::fs::write(src.join("a.txt"), b"hello, tree\n").unwrap();
    std::fs::write(src.join("dir/big.bin"), data(9000, 5)).unwrap();
    std::fs::write(src.join("dir/sub/same.txt"), b"hello, tree\n").unwrap();
    std::fs::write(src.join("zero"), b"").unwrap();
    std::fs::set_permissions(src.join("a.txt"), std::fs::Permissions::from_mode(0o4751)).unwrap();
    std::os::unix::fs::symlink("dir/big.bin", src.join("link")).unwrap();
    std::fs::hard_link(src.join("dir/big.bin"), src.join("dir/hard")).unwrap();
    let fifo = std::ffi::CString::new(src.join("fifo").to_str().unwrap()).unwrap();
    // SAFETY: valid path.
    unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) };
    if !set_xattr(&src.join("a.txt"), "user.fuzz", b"seed\0value") {
        eprintln!("note: extended attributes not supported here; seeds have none");
    }
    set_xattr(&src.join("dir"), "user.d", b"");
    let mut archives = Vec::new();
    for (name, codec) in [("tree-lz4", Codec::Lz4), ("tree-none", Codec::None)] {
        let out = tmp.join(name);
        let o = PackOptions {
            codec,
            ..small.clone()
        };
        pack_tree(&src, &out, &o, &TreePackOptions::default(), None).unwrap();
        archives.push((name, out, true));
    }
    let enc = tmp.join("tree-enc");
    pack_tree(
        &src,
        &enc,
        &PackOptions {
            encryption: Some(EncryptOptions {
                password: Password::new(PASSWORD),
                kdf: Kdf::Argon2id {
                    m_kib: 8,
                    t: 1,
                    p: 1,
                },
            }),
            ..small.clone()
        },
        &TreePackOptions::default(),
        None,
    )
    .unwrap();
    archives.push(("tree-enc", enc, false));
    // Two levels: 2000 empty files (Zstandard packs their near-identical entries into a few
    // KiB) fill five leaves; the root is a small interior page that stays uncompressed (its
    // child digests do not compress), so mutations reach its keys and references directly.
    let mut entries = vec![TreeEntry::dir(Vec::new())];
    for i in 0..2000 {
        let mut e = TreeEntry::dir(format!("file-{i:05}-{}", "p".repeat(80)).into_bytes());
        e.kind = EntryKind::File;
        e.mode = 0o644;
        if i % 500 == 0 {
            e.size = 10;
            e.data_offset = i / 50;
        }
        entries.push(e);
    }
    let deep = tmp.join("tree-deep");
    pack_entries(
        entries,
        data(80, 6),
        &deep,
        &PackOptions {
            codec: Codec::Zstd,
            level: 3,
            ..small.clone()
        },
    )
    .unwrap();
    archives.push(("tree-deep", deep, true));
    for (name, p, plain) in archives {
        let a = std::fs::read(&p).unwrap();
        assert!(a.len() < 64 << 10, "{name} is {} bytes", a.len());
        write(root, "file_table", name, &a);
        if !plain {
            continue;
        }
        let f = hexz_core::File::open(&p).unwrap();
        let sec = *f
            .master()
            .section(hexz_core::format::section::SECTION_FILE_TABLE)
            .unwrap();
        let hb = &a[sec.offset as usize..(sec.offset + sec.len) as usize];
        write(root, "file_table", &format!("{name}-header"), hb);
        let h = TreeHeader::decode(hb).unwrap();
        let mut pages = Vec::new();
        tree_pages(&a, &h.root, &mut pages);
        for (i, pg) in pages.iter().enumerate() {
            if pg.len() < 16 << 10 {
                write(root, "file_table", &format!("{name}-page-{i}"), pg);
            }
        }
    }
}
