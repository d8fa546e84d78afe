//! Caches for the reader: a byte-bounded sharded LRU used for decompressed blocks and index
//! pages, the sequential-access detector that drives read-ahead, the disk tier that keeps
//! stored bytes of remote archives on local disk ([`disk`]), and the pool that recycles the
//! buffers of fetched stored blocks ([`bufpool`]).

pub mod bufpool;
pub mod disk;
pub mod fork;
pub mod lru;
pub mod prefetch;

pub use self::lru::ShardedLru;
pub use prefetch::ReadAhead;
