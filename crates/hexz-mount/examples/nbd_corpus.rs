//! Writes the seed corpus of the `nbd_proto` fuzz target (`fuzz/corpus/nbd_proto/`): client
//! byte streams of whole NBD sessions, each prefixed with the target's mode byte (bit 0: a
//! writable volume). They cover every option (list, info with a block-size request, go by
//! name and by the default name, export-name with and without the zero padding, abort, an
//! unknown option, bad payloads) and every command (reads inside and outside the export,
//! writes, FUA writes, flush, trim, write-zeroes, an unknown command, disconnect), so
//! libFuzzer starts inside transmission instead of stopping at the greeting.
//!
//! `cargo run -p hexz-mount --example nbd_corpus -- fuzz/corpus`

use hexz_mount::nbd::proto::*;
use std::path::PathBuf;

fn flags(no_zeroes: bool) -> Vec<u8> {
    let f = FLAG_FIXED_NEWSTYLE as u32 | if no_zeroes { FLAG_NO_ZEROES as u32 } else { 0 };
    f.to_be_bytes().to_vec()
}

fn opt(b: &mut Vec<u8>, option: u32, data: &[u8]) {
    b.extend_from_slice(&IHAVEOPT.to_be_bytes());
    b.extend_from_slice(&option.to_be_bytes());
    b.extend_from_slice(&(data.len() as u32).to_be_bytes());
    b.extend_from_slice(data);
}

fn go_payload(name: &str, info: &[u16]) -> Vec<u8> {
    let mut d = (name.len() as u32).to_be_bytes().to_vec();
    d.extend_from_slice(name.as_bytes());
    d.extend_from_slice(&(info.len() as u16).to_be_bytes());
    for i in info {
        d.extend_from_slice(&i.to_be_bytes());
    }
    d
}

fn req(b: &mut Vec<u8>, cmd: u16, flags: u16, cookie: u64, offset: u64, len: u32) {
    b.extend_from_slice(&REQUEST_MAGIC.to_be_bytes());
    b.extend_from_slice(&flags.to_be_bytes());
    b.extend_from_slice(&cmd.to_be_bytes());
    b.extend_from_slice(&cookie.to_be_bytes());
    b.extend_from_slice(&offset.to_be_bytes());
    b.extend_from_slice(&len.to_be_bytes());
}

fn main() {
    let root = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "fuzz/corpus".into()),
    )
    .join("nbd_proto");
    std::fs::create_dir_all(&root).unwrap();
    let mut seeds: Vec<(&str, Vec<u8>)> = Vec::new();

    // Read-only: list, info, go with the default name, then every command.
    let mut b = vec![0u8];
    b.extend(flags(true));
    opt(&mut b, OPT_LIST, &[]);
    opt(&mut b, OPT_INFO, &go_payload("disk", &[INFO_BLOCK_SIZE]));
    opt(&mut b, OPT_GO, &go_payload("", &[]));
    req(&mut b, 0, 0, 1, 0, 4096);
    req(&mut b, 0, 0, 2, 4000, 300);
    req(&mut b, 0, 0, 3, 16 << 10, 1);
    req(&mut b, 1, 0, 4, 0, 3);
    b.extend_from_slice(b"abc");
    req(&mut b, 3, 0, 5, 0, 0);
    req(&mut b, 4, 0, 6, 0, 4096);
    req(&mut b, 9, 0, 7, 0, 0);
    req(&mut b, 2, 0, 8, 0, 0);
    seeds.push(("ro-go", b));

    // Writable memory export: writes (one FUA), read back, write-zeroes, trim, out of range.
    let mut b = vec![1u8];
    b.extend(flags(true));
    opt(&mut b, OPT_GO, &go_payload("memory", &[INFO_BLOCK_SIZE]));
    req(&mut b, 1, 0, 1, 100, 8);
    b.extend_from_slice(b"written!");
    req(&mut b, 1, CMD_FLAG_FUA, 2, 4090, 6);
    b.extend_from_slice(b"at end");
    req(&mut b, 0, 0, 3, 96, 16);
    req(&mut b, 6, 0, 4, 1000, 2000);
    req(&mut b, 4, 0, 5, 3000, 1096);
    req(&mut b, 0, 0, 6, 0, 4096);
    req(&mut b, 1, 0, 7, 4095, 2);
    b.extend_from_slice(b"xx");
    req(&mut b, 3, 0, 8, 0, 0);
    req(&mut b, 2, 0, 9, 0, 0);
    seeds.push(("rw-go", b));

    // Export-name (old style entry) with the 124 zero bytes, then reads.
    let mut b = vec![0u8];
    b.extend(flags(false));
    opt(&mut b, OPT_EXPORT_NAME, b"disk");
    req(&mut b, 0, 0, 1, 8192, 8192);
    req(&mut b, 0, 0, 2, u64::MAX, 2);
    req(&mut b, 2, 0, 3, 0, 0);
    seeds.push(("ro-export-name", b));

    // Writable disk through export-name, no zeroes; the stream ends mid-write.
    let mut b = vec![1u8];
    b.extend(flags(true));
    opt(&mut b, OPT_EXPORT_NAME, b"");
    req(&mut b, 1, 0, 1, 4096, 4096);
    b.extend(std::iter::repeat_n(0x5a, 4096));
    req(&mut b, 0, 0, 2, 4000, 200);
    req(&mut b, 1, 0, 3, 0, 100);
    b.extend_from_slice(b"short");
    seeds.push(("rw-export-name-eof", b));

    // Option errors, then abort.
    let mut b = vec![0u8];
    b.extend(flags(true));
    opt(&mut b, 42, b"unknown option");
    opt(&mut b, OPT_LIST, b"x");
    opt(&mut b, OPT_GO, &[0, 0, 0, 200, 1]);
    opt(&mut b, OPT_INFO, &go_payload("nope", &[]));
    opt(&mut b, OPT_ABORT, &[]);
    seeds.push(("options-abort", b));

    // A protocol error in transmission: bad request magic.
    let mut b = vec![0u8];
    b.extend(flags(true));
    opt(&mut b, OPT_GO, &go_payload("disk", &[]));
    req(&mut b, 0, 0, 1, 0, 512);
    b.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
    b.extend_from_slice(&[0; 24]);
    seeds.push(("bad-magic", b));

    for (name, b) in seeds {
        std::fs::write(root.join(name), b).unwrap();
    }
    eprintln!("NBD seeds written to {}", root.display());
}
