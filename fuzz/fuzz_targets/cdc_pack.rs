//! The content-defined chunker and the packer end to end: any input packs (fixed 4 KiB and
//! CDC 1/2/8 KiB blocks) and reads back byte for byte.
#![no_main]
use hexz_core::ops::{pack, CdcParams, PackInput, PackOptions, PackSource};
use hexz_core::{File, SnapshotStream};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.is_empty() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("hexz-fuzz-cdc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("a.hxz");
    for cdc in [None, Some(CdcParams { min: 1024, avg: 2048, max: 8192 })] {
        let opts = PackOptions {
            block_size: 4096,
            cdc,
            threads: 1,
            ..PackOptions::default()
        };
        let input = PackInput {
            disk: Some(PackSource::Reader(Box::new(std::io::Cursor::new(data.to_vec())))),
            memory: None,
        };
        pack(input, &out, &opts, None).expect("pack");
        let f = File::open(&out).expect("open");
        assert_eq!(f.read_at(SnapshotStream::Disk, 0, data.len()).expect("read"), data);
        if let Some(c) = cdc {
            for e in f.entries(SnapshotStream::Disk) {
                let e = e.expect("entry");
                assert!(e.logical_len <= c.max);
            }
        }
    }
});
