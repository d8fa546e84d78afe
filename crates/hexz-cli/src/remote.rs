//! Options for archives given by URL, shared by every command that reads archives.

use hexz_core::store::RemoteOptions;
use std::path::PathBuf;

/// `--cache-dir`, `--cache-size`, `--allow-restricted`: flattened into each command that
/// opens archives (through [`crate::secret::OpenArgs`], and into `pack` for `--base`).
#[derive(clap::Args, Clone, Default, Debug)]
pub struct RemoteArgs {
    /// Keep the stored bytes of remote archives in this directory (shared safely by
    /// concurrent processes; default HEXZ_CACHE_DIR, else no disk cache).
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Most bytes the disk cache holds (default 10G); it also leaves 5% of the disk free.
    #[arg(long, value_name = "SIZE", value_parser = crate::util::parse_size)]
    pub cache_size: Option<u64>,
    /// Allow URLs whose host is a loopback, private, link-local or cloud-metadata address
    /// (refused by default; also HEXZ_ALLOW_RESTRICTED=1).
    #[arg(long)]
    pub allow_restricted: bool,
}

impl RemoteArgs {
    /// The options: the environment's, overridden by the flags given.
    pub fn options(&self) -> RemoteOptions {
        let mut o = RemoteOptions::from_env();
        if let Some(d) = &self.cache_dir {
            o.cache_dir = Some(d.clone());
        }
        if let Some(s) = self.cache_size {
            o.cache_size = s;
        }
        if self.allow_restricted {
            o.allow_restricted = true;
        }
        o
    }
}
