//! One module per subcommand.

pub mod cat;
#[cfg(feature = "mount")]
pub mod commit;
pub mod diff;
pub mod extract;
pub mod flatten;
pub mod info;
pub mod keys;
pub mod ls;
#[cfg(feature = "mount")]
pub mod mount;
pub mod pack;
pub mod pull;
pub mod push;
#[cfg(feature = "mount")]
pub mod serve;
pub mod tree;
pub mod verify;
