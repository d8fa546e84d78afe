//! Caches for the reader: a byte-bounded sharded LRU used for decompressed blocks and index
//! pages, and the sequential-access detector that drives read-ahead.

pub mod lru;
pub mod prefetch;

pub use self::lru::ShardedLru;
pub use prefetch::ReadAhead;
