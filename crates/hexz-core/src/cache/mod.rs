//! Caches for the reader: a byte-bounded sharded LRU used for decompressed blocks and index
//! pages, the sequential-access detector that drives read-ahead, and the disk tier that keeps
//! stored bytes of remote archives on local disk ([`disk`]).

pub mod disk;
pub mod fork;
pub mod lru;
pub mod prefetch;

pub use self::lru::ShardedLru;
pub use prefetch::ReadAhead;
