//! One module per subcommand.

pub mod cat;
pub mod diff;
pub mod extract;
pub mod flatten;
pub mod info;
pub mod keys;
pub mod pack;
pub mod pull;
pub mod push;
pub mod verify;
