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

    // CDC chunker / packer round trip: raw input bytes.
    write(&root, "cdc_pack", "mixed", &data(20_000, 4));
    write(&root, "cdc_pack", "zeros", &[0u8; 9000]);

    std::fs::remove_dir_all(&tmp).unwrap();
    eprintln!("seed corpus written to {}", root.display());
}
