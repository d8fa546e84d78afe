//! The file table of tree archives (format 1.2): plain pages (`HXFT…`) and file table headers
//! (`HXFH…`) decoded directly, with a canonical re-encoding oracle; any other input opened as
//! an archive, as is and with every page digest, the section digest, the master digest and
//! the header CRC recomputed, then iterated, looked up, listed, walked and read with bounded
//! work, all views agreeing. The oracle lives in `hexz_fuzz::check_file_table` so `cargo
//! test` replays the committed corpus through it too.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| hexz_fuzz::check_file_table(data));
