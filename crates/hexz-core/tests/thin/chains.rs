//! Round trips over chains.

use super::*;

struct Level {
    path: PathBuf,
    disk: Vec<u8>,
    memory: Option<Vec<u8>>,
    stats: PackStats,
}

/// Builds a chain of `levels` archives with `opts`, each level the next version of the
/// previous one, and checks every level after building it and again at the end.
fn chain_round_trip(opts: &PackOptions, two_streams: bool, levels: usize, seed: u64) {
    let dir = tempfile::tempdir().unwrap();
    let insert = opts.cdc.is_some();
    let what0 = format!(
        "{} {} {} stream(s)",
        if insert { "cdc" } else { "fixed" },
        opts.codec,
        if two_streams { 2 } else { 1 }
    );
    let mut chain: Vec<Level> = Vec::new();
    for k in 1..=levels {
        let (disk, memory) = match chain.last() {
            None => (
                mixed(5 << 20, seed),
                two_streams.then(|| mixed(2 << 20, seed + 1)),
            ),
            Some(prev) => (
                next_version(&prev.disk, seed * 100 + k as u64, insert),
                prev.memory
                    .as_ref()
                    .map(|m| next_version(m, seed * 100 + 50 + k as u64, insert)),
            ),
        };
        let path = dir.path().join(format!("level{k}.hxz"));
        let o = match chain.last() {
            None => opts.clone(),
            Some(prev) => with_base(opts, &prev.path),
        };
        let stats = pack_to(&path, Some(&disk), memory.as_deref(), &o);
        let what = format!("{what0}, level {k}");

        // Statistics: a child refers to its ancestors for what did not change.
        let mut sts: Vec<(&StreamStats, &[u8], SnapshotStream)> =
            vec![(stats.disk.as_ref().unwrap(), &disk, DISK)];
        if let Some(m) = &memory {
            sts.push((stats.memory.as_ref().unwrap(), m, MEM));
        }
        let f = File::open(&path).unwrap();
        for (st, data, s) in &sts {
            assert_eq!(st.input_bytes, data.len() as u64, "{what}: {s} input");
            assert_eq!(
                st.blocks,
                expected_lens(data, opts).len() as u64,
                "{what}: {s} block count"
            );
            let rec = f.master().stream(*s).unwrap();
            assert_eq!(rec.stored_bytes, st.stored_bytes, "{what}: {s} record");
            if k == 1 {
                assert_eq!(st.parent_blocks, 0, "{what}: {s} parent blocks");
            } else {
                assert!(st.parent_blocks > 0, "{what}: {s} found nothing in parent");
                assert!(
                    st.stored_bytes < st.input_bytes / 5,
                    "{what}: {s} child stores {} of {} bytes",
                    st.stored_bytes,
                    st.input_bytes
                );
                let first = &chain[0].stats;
                let first = if *s == DISK {
                    first.disk.as_ref()
                } else {
                    first.memory.as_ref()
                };
                // Small blocks: the edits touch a small share; 64 KiB blocks on a 2 MiB
                // stream: a larger one.
                let factor = if opts.cdc.map_or(opts.block_size, |c| c.avg) <= 16384 {
                    4
                } else {
                    2
                };
                assert!(
                    st.stored_bytes * factor < first.unwrap().stored_bytes,
                    "{what}: {s} child stores {} bytes, the first level {}",
                    st.stored_bytes,
                    first.unwrap().stored_bytes
                );
            }
        }

        // Structure of the chain.
        assert_eq!(f.chain_len(), k, "{what}: chain_len");
        assert_eq!(f.chain_ids().len(), k, "{what}: chain_ids");
        assert_eq!(
            f.header().flags & FLAG_HAS_PARENT != 0,
            k > 1,
            "{what}: THIN flag"
        );
        assert_eq!(
            f.master().meta(META_PARENT_PATH).is_some(),
            k > 1,
            "{what}: parent path metadata"
        );
        if k > 1 {
            assert_eq!(
                f.master().meta(META_PARENT_PATH).unwrap(),
                format!("level{}.hxz", k - 1).as_bytes(),
                "{what}: recorded parent path"
            );
            let parent = f.parent().expect("parent");
            assert_eq!(
                f.header().parent.archive_id,
                parent.header().archive_id,
                "{what}: parent id"
            );
            assert_eq!(f.header().parent.index_digest, parent.master().digest);
        }
        let mut sources = HashSet::new();
        let mut nonzero = 0u64;
        for (_, data, s) in &sts {
            let es = entries(&f, *s);
            let lens: Vec<usize> = es.iter().map(|e| e.logical_len as usize).collect();
            assert_eq!(lens, expected_lens(data, opts), "{what}: {s} block layout");
            for e in &es {
                sources.insert(e.source);
                if !e.is_zero() {
                    nonzero += e.logical_len as u64;
                }
            }
            assert_eq!(
                nonzero_block_bytes(data, opts),
                es.iter()
                    .filter(|e| !e.is_zero())
                    .map(|e| e.logical_len as u64)
                    .sum::<u64>(),
                "{what}: {s} zero blocks"
            );
        }
        assert!(
            sources.iter().all(|&s| (s as usize) < k),
            "{what}: sources {sources:?}"
        );
        // Blocks unchanged since the first version are still read from the first archive.
        assert!(
            sources.contains(&((k - 1) as u16)),
            "{what}: no block refers to the root archive (sources {sources:?})"
        );
        let links = ops::inspect::chain(&f).unwrap();
        assert_eq!(links.len(), k, "{what}: chain links");
        assert_eq!(
            links.iter().map(|l| l.supplied_bytes).sum::<u64>(),
            nonzero,
            "{what}: supplied bytes"
        );
        for (d, l) in links.iter().enumerate() {
            assert_eq!(l.depth, d);
            assert!(
                l.supplied_bytes > 0,
                "{what}: ancestor {d} supplies nothing"
            );
        }
        assert_eq!(links[0].location, path.display().to_string());

        check_stream(&f, DISK, &disk, seed + k as u64, &what);
        if let Some(m) = &memory {
            check_stream(&f, MEM, m, seed + 7 * k as u64, &what);
        } else {
            assert!(!f.has_stream(MEM));
        }
        chain.push(Level {
            path,
            disk,
            memory,
            stats,
        });
    }

    // Every level still reads back after the later ones were made (with a fresh File and
    // with verification of the whole chain).
    for (i, l) in chain.iter().enumerate() {
        let what = format!("{what0}, level {} at the end", i + 1);
        let f = File::open_with(
            &l.path,
            OpenOptions {
                mmap: i % 2 == 0,
                cache_bytes: 0,
                ..OpenOptions::default()
            },
        )
        .unwrap();
        let rep = ops::verify(&f, None).unwrap();
        assert_eq!(rep.archives, (i + 1) as u64, "{what}: verify archives");
        check_stream(&f, DISK, &l.disk, 99 + i as u64, &what);
        if let Some(m) = &l.memory {
            check_stream(&f, MEM, m, 98 + i as u64, &what);
        }
    }

    // Flatten the last level: standalone, same content, same layout, same size as a fresh
    // pack of that content with the same options.
    let last = chain.last().unwrap();
    let flat = dir.path().join("flat.hxz");
    let fresh = dir.path().join("fresh.hxz");
    let child = File::open(&last.path).unwrap();
    let fs = ops::flatten(&child, &flat, None, None).unwrap();
    let fresh_stats = pack_to(&fresh, Some(&last.disk), last.memory.as_deref(), opts);
    assert_eq!(
        fs.archive_bytes, fresh_stats.archive_bytes,
        "{what0}: flattened size differs from a fresh pack"
    );
    drop(child);
    for l in &chain[..chain.len() - 1] {
        std::fs::remove_file(&l.path).unwrap();
    }
    let f = File::open(&flat).unwrap();
    let g = File::open(&fresh).unwrap();
    assert_eq!(f.chain_len(), 1);
    assert!(f.parent().is_none());
    assert_eq!(f.header().flags & FLAG_HAS_PARENT, 0);
    assert_eq!(
        f.header().flags & FLAG_CDC != 0,
        opts.cdc.is_some(),
        "{what0}: flatten keeps the chunking"
    );
    assert_eq!(f.header().codec, opts.codec);
    assert_eq!(
        (
            f.header().block_size,
            f.header().cdc_min,
            f.header().cdc_max
        ),
        (
            g.header().block_size,
            g.header().cdc_min,
            g.header().cdc_max
        )
    );
    assert!(f.master().meta(META_PARENT_PATH).is_none());
    let info = ops::inspect(&f, fs.archive_bytes);
    assert!(!info.flags.contains(&"thin"), "{:?}", info.flags);
    for s in f.streams() {
        let (ef, eg) = (entries(&f, s), entries(&g, s));
        assert!(ef.iter().all(|e| e.source == 0));
        let hf: Vec<_> = ef.iter().map(|e| (e.logical_len, e.hash)).collect();
        let hg: Vec<_> = eg.iter().map(|e| (e.logical_len, e.hash)).collect();
        assert!(
            hf == hg,
            "{what0}: flattened {s} blocks differ from a fresh pack"
        );
    }
    check_stream(&f, DISK, &last.disk, 5, &format!("{what0}, flattened"));
    if let Some(m) = &last.memory {
        check_stream(&f, MEM, m, 6, &format!("{what0}, flattened"));
    }
    let d = ops::diff(&f, &g).unwrap();
    assert!(d.identical() && d.unique_a == 0 && d.unique_b == 0 && d.decoded_bytes == 0);
    // The chain is gone, so the last level no longer opens; the flattened copy does not care.
    let e = err_of(File::open(&last.path));
    assert!(
        e.contains(&format!("level{}.hxz", chain.len() - 1)),
        "{what0}: {e}"
    );
}

#[test]
fn chain_fixed_lz4_disk() {
    chain_round_trip(&fixed(Codec::Lz4, 4096), false, 4, 1);
}

#[test]
fn chain_fixed_lz4_disk_and_memory() {
    chain_round_trip(&fixed(Codec::Lz4, 4096), true, 4, 2);
}

#[test]
fn chain_fixed_zstd_disk() {
    chain_round_trip(&fixed(Codec::Zstd, 4096), false, 4, 3);
}

#[test]
fn chain_fixed_zstd_disk_and_memory() {
    chain_round_trip(&fixed(Codec::Zstd, 4096), true, 4, 4);
}

#[test]
fn chain_cdc_lz4_disk() {
    chain_round_trip(&cdc(Codec::Lz4, 1024, 4096, 16384), false, 4, 5);
}

#[test]
fn chain_cdc_lz4_disk_and_memory() {
    chain_round_trip(&cdc(Codec::Lz4, 1024, 4096, 16384), true, 4, 6);
}

#[test]
fn chain_cdc_zstd_disk() {
    chain_round_trip(&cdc(Codec::Zstd, 1024, 4096, 16384), false, 4, 7);
}

#[test]
fn chain_cdc_zstd_disk_and_memory() {
    chain_round_trip(&cdc(Codec::Zstd, 1024, 4096, 16384), true, 4, 8);
}

#[test]
fn chain_of_two_with_default_block_sizes() {
    chain_round_trip(&fixed(Codec::Lz4, 64 * 1024), true, 2, 9);
    let d = CdcParams::default();
    chain_round_trip(&cdc(Codec::Zstd, d.min, d.avg, d.max), true, 2, 10);
}

/// Each level of the chain uses different chunking, block sizes and codecs: blocks are
/// decoded through the chain with the codec of the archive that stores them. Levels 1 and 4
/// share their parent's block layout, so they refer to blocks compressed with another codec.
#[test]
fn chain_mixing_codecs_and_chunking_per_level() {
    let dir = tempfile::tempdir().unwrap();
    let per_level = [
        fixed(Codec::Lz4, 64 * 1024),
        fixed(Codec::Zstd, 64 * 1024),
        fixed(Codec::Zstd, 16 * 1024),
        cdc(Codec::Lz4, 16 * 1024, 64 * 1024, 256 * 1024),
        cdc(Codec::None, 16 * 1024, 64 * 1024, 256 * 1024),
    ];
    let mut versions: Vec<(PathBuf, Vec<u8>)> = Vec::new();
    for (k, opts) in per_level.iter().enumerate() {
        let data = match versions.last() {
            None => mixed(4 << 20, 77),
            Some((_, prev)) => next_version(prev, 700 + k as u64, k == 4),
        };
        let path = dir.path().join(format!("m{k}.hxz"));
        let o = match versions.last() {
            None => opts.clone(),
            Some((p, _)) => with_base(opts, p),
        };
        let st = pack_to(&path, Some(&data), None, &o).disk.unwrap();
        if k == 1 || k == 4 {
            assert!(
                st.parent_blocks > 0,
                "level {k} found nothing in its parent"
            );
        }
        versions.push((path, data));
    }
    for (k, (p, data)) in versions.iter().enumerate() {
        let f = File::open(p).unwrap();
        assert_eq!(f.chain_len(), k + 1);
        check_stream(&f, DISK, data, 300 + k as u64, &format!("mixed level {k}"));
        assert_eq!(ops::verify(&f, None).unwrap().archives, (k + 1) as u64);
    }
    let codecs_by_source = |k: usize| {
        let f = File::open(&versions[k].0).unwrap();
        let mut m: HashMap<u16, HashSet<Codec>> = HashMap::new();
        for e in entries(&f, DISK).iter().filter(|e| !e.is_zero()) {
            m.entry(e.source).or_default().insert(e.codec);
        }
        m
    };
    // Level 1 (zstd) takes unchanged blocks from level 0 (LZ4).
    let m1 = codecs_by_source(1);
    assert!(
        m1.get(&1).is_some_and(|c| c.contains(&Codec::Lz4)),
        "{m1:?}"
    );
    assert!(!m1[&0].contains(&Codec::Lz4), "{m1:?}");
    // Level 4 (no compression) takes unchanged chunks from level 3 (LZ4).
    let m4 = codecs_by_source(4);
    assert!(
        m4.get(&1).is_some_and(|c| c.contains(&Codec::Lz4)),
        "{m4:?}"
    );
    assert!(
        m4.get(&0)
            .is_some_and(|c| c == &HashSet::from([Codec::None])),
        "{m4:?}"
    );
}

/// `PackOptions::base` promises that blocks "the parent (or any of its ancestors) already
/// holds" are stored as references. Content the grandparent stores but the parent no longer
/// uses (a file deleted in v2 and restored in v3) is held by an ancestor, so v3 should refer
/// to it (source 2) instead of storing it again.
#[test]
fn blocks_held_only_by_a_grandparent_are_found() {
    let dir = tempfile::tempdir().unwrap();
    let bs = 64 * 1024;
    let opts = fixed(Codec::Lz4, bs as u32);
    let v1 = text_like(8 * bs, 61);
    let mut v2 = v1.clone();
    v2[2 * bs..3 * bs].copy_from_slice(&text_like(bs, 62)); // block 2 "deleted"
    let v3 = v1.clone(); // and restored
    let (p1, p2, p3) = (
        dir.path().join("1.hxz"),
        dir.path().join("2.hxz"),
        dir.path().join("3.hxz"),
    );
    pack_to(&p1, Some(&v1), None, &opts);
    pack_to(&p2, Some(&v2), None, &with_base(&opts, &p1));
    let s3 = pack_to(&p3, Some(&v3), None, &with_base(&opts, &p2))
        .disk
        .unwrap();
    let f = File::open(&p3).unwrap();
    check_stream(&f, DISK, &v3, 1, "restored block");
    let src: Vec<u16> = entries(&f, DISK).iter().map(|e| e.source).collect();
    assert_eq!(
        (s3.parent_blocks, s3.stored_bytes, src),
        (8, 0, vec![2u16; 8]),
        "v3 (= v1) over v2 over v1: the block v2 dropped is stored again instead of \
         referring to v1"
    );
}
