//! Replays the committed fuzz seed corpus (fuzz/corpus) through the same oracle the
//! `open_read` and `open_read_fixed` fuzz targets use, so every CI run exercises the seeds
//! even on a machine without cargo-fuzz: each archive opens cleanly or fails with an error,
//! and every read either fails or agrees with a whole-stream read (the oracle panics otherwise).

#[allow(dead_code)]
#[path = "../../../fuzz/src/lib.rs"]
mod hexz_fuzz;

use std::path::Path;

fn replay(target: &str, fix: bool) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let data = std::fs::read(e.unwrap().path()).unwrap();
        let mut a = data.clone();
        if fix {
            hexz_fuzz::fix_checksums(&mut a);
        }
        if let Ok(f) = hexz_fuzz::open(a, hexz_fuzz::options()) {
            hexz_fuzz::exercise(&f, &data[data.len().saturating_sub(32)..]);
        }
        n += 1;
    }
    n
}

#[test]
fn open_read_seeds() {
    assert!(
        replay("open_read", false) > 0,
        "no seeds in fuzz/corpus/open_read"
    );
}

#[test]
fn open_read_fixed_seeds() {
    assert!(
        replay("open_read_fixed", true) > 0,
        "no seeds in fuzz/corpus/open_read_fixed"
    );
}

fn replay_with(target: &str, check: fn(&[u8])) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        check(&std::fs::read(e.unwrap().path()).unwrap());
        n += 1;
    }
    n
}

#[test]
fn master_index_seeds() {
    // Includes regress-reserved-bytes-*: an index with non-zero reserved bytes, which readers
    // ignore, so it re-encodes canonically rather than byte for byte (found by CI's fuzz run).
    assert!(replay_with("master_index", hexz_fuzz::check_master_index) > 1);
}

#[test]
fn index_page_seeds() {
    assert!(replay_with("index_page", hexz_fuzz::check_index_page) > 0);
}

#[test]
fn file_table_seeds() {
    // Tree archives (opened as is and with their digests fixed up, then iterated, looked up,
    // listed, walked and read) and the plain pages and headers cut out of them.
    assert!(replay_with("file_table", hexz_fuzz::check_file_table) > 4);
}

#[test]
fn file_table_interior_key_regression() {
    // Found by the file_table target: an interior page's key for a child changed (digests
    // fixed up), so iteration listed an entry that lookup could not find. The reader now
    // refuses a child page whose first path differs from its key.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/file_table");
    let mut a = std::fs::read(dir.join("regress-interior-key-74bea06e")).unwrap();
    hexz_fuzz::fix_tree_checksums(&mut a);
    hexz_fuzz::fix_checksums(&mut a);
    let f = hexz_fuzz::open(a, hexz_fuzz::options()).unwrap();
    let t = hexz_core::api::FileTree::open(&f).unwrap().unwrap();
    let err = t
        .iter()
        .and_then(|it| it.collect::<hexz_core::Result<Vec<_>>>())
        .unwrap_err()
        .to_string();
    assert!(err.contains("differs from its key"), "{err}");
}
