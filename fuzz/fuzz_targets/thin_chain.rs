//! A thin child with its parent: u32 LE parent length, the parent, then the child. Both
//! get their checksums recomputed; the parent is supplied explicitly. Mismatched, looping or
//! damaged chains fail cleanly; reads agree with whole-stream reads.
#![no_main]
use hexz_core::OpenOptions;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let n = (u32::from_le_bytes(data[..4].try_into().unwrap()) as usize).min(data.len() - 4);
    let mut parent = data[4..4 + n].to_vec();
    let mut child = data[4 + n..].to_vec();
    hexz_fuzz::fix_checksums(&mut parent);
    hexz_fuzz::fix_checksums(&mut child);
    let Ok(p) = hexz_fuzz::open(parent.clone(), hexz_fuzz::options()) else {
        return;
    };
    let opts = OpenOptions {
        parent: Some(p),
        ..hexz_fuzz::options()
    };
    if let Ok(f) = hexz_fuzz::open(child, opts) {
        hexz_fuzz::exercise(&f, &data[data.len().saturating_sub(32)..]);
    }
    // The parent given as its own parent: a loop, refused.
    if let Ok(p) = hexz_fuzz::open(parent.clone(), hexz_fuzz::options()) {
        let opts = OpenOptions {
            parent: Some(p),
            ..hexz_fuzz::options()
        };
        let _ = hexz_fuzz::open(parent, opts);
    }
});
