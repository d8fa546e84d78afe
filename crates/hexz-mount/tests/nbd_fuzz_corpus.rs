//! Replays the committed seed corpus of the `nbd_proto` fuzz target (fuzz/corpus/nbd_proto)
//! through the same oracle (fuzz/src/nbd.rs): the real NBD session code driven by each
//! client byte stream over an in-memory pipe, every reply checked against a model of the
//! protocol. Runs in `cargo test` on machines without cargo-fuzz.

#[allow(dead_code)]
#[path = "../../../fuzz/src/nbd.rs"]
mod nbd;

use std::path::Path;

#[test]
fn nbd_proto_seeds() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/nbd_proto");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let p = e.unwrap().path();
        let data = std::fs::read(&p).unwrap();
        eprintln!("{}", p.display());
        nbd::check_session(&data);
        n += 1;
    }
    assert!(n >= 6, "only {n} seeds in {}", dir.display());
}
