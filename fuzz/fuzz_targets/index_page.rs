//! Index page parsing: first byte the stream id the page is expected to belong to, the rest
//! the page. The master index's reference to it is derived from the page itself (digest,
//! entry count, first offset), so mutations get past the digest check.
#![no_main]
use hexz_core::format::{PageRef, SnapshotStream};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&sid, page)) = data.split_first() else {
        return;
    };
    let stream = SnapshotStream::from_id(sid & 1).expect("0 or 1");
    let count = page
        .get(8..12)
        .map_or(0, |c| u32::from_le_bytes(c.try_into().unwrap()));
    let first = page
        .get(16..24)
        .map_or(0, |c| u64::from_le_bytes(c.try_into().unwrap()));
    let r = PageRef {
        first_logical: first,
        offset: 512,
        len: page.len() as u32,
        entry_count: count,
        first_block: 0,
        hash: hexz_core::algo::hash::blake3(page),
    };
    if let Ok(p) = hexz_core::format::IndexPage::decode(page, &r, stream, "fuzzed page") {
        assert_eq!(p.encode(), page);
        let mut at = first;
        for e in &p.entries {
            assert_eq!(e.logical_offset, at);
            at = e.logical_offset.checked_add(e.logical_len as u64).expect("no overflow");
        }
    }
});
