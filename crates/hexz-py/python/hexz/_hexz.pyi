"""Type stubs of the compiled module ``hexz._hexz`` (import ``hexz`` instead)."""

import io
import os
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

from ._stream import ArchiveFile, ArchiveStream

__version__: str
DEFAULT_CACHE_SIZE: int
WORKER_CACHE_SIZE: int

_PathOrUrl = Union[str, "os.PathLike[str]"]
_Buffer = Any  # any object exporting a writable, C-contiguous buffer
_Path = Union[str, bytes, "os.PathLike[str]"]  # a path inside a file-tree archive

class FileStat:
    """What the file table of a tree archive says about one entry (``Archive.stat``).

    Fields follow ``os.lstat``; the ``st_*`` aliases let code written for
    ``os.stat_result`` take one."""

    @property
    def path(self) -> str:
        """Path relative to the tree's root."""
    @property
    def type(self) -> str:
        """``"file"``, ``"dir"``, ``"symlink"``, ``"chardev"``, ``"blockdev"``, ``"fifo"``
        or ``"socket"``."""
    @property
    def mode(self) -> int:
        """``st_mode``: type and permission bits."""
    @property
    def size(self) -> int:
        """Regular file: its length; symlink: the length of its target; otherwise 0."""
    @property
    def uid(self) -> int: ...
    @property
    def gid(self) -> int: ...
    @property
    def mtime(self) -> float:
        """Seconds since the epoch (``mtime_ns`` is exact)."""
    @property
    def mtime_ns(self) -> int: ...
    @property
    def rdev(self) -> int:
        """Device number of a device node (0 otherwise)."""
    @property
    def link_target(self) -> Optional[str]:
        """Target of a symlink, as stored; ``None`` for other entries."""
    @property
    def hardlink_to(self) -> Optional[str]:
        """For a hard link, the path of the entry it shares contents with; else ``None``."""
    @property
    def xattrs(self) -> Dict[str, bytes]:
        """Extended attributes."""
    @property
    def data_offset(self) -> int:
        """Regular file: where its bytes start in the ``"disk"`` stream."""
    def is_file(self) -> bool: ...
    def is_dir(self) -> bool: ...
    def is_symlink(self) -> bool: ...
    @property
    def st_mode(self) -> int: ...
    @property
    def st_size(self) -> int: ...
    @property
    def st_uid(self) -> int: ...
    @property
    def st_gid(self) -> int: ...
    @property
    def st_mtime(self) -> float: ...
    @property
    def st_mtime_ns(self) -> int: ...
    @property
    def st_rdev(self) -> int: ...

class Reader:
    """Positional reads of one stream of an :class:`Archive` (``Archive.reader``) with a
    read-ahead of their own. Thread-safe; pickles as its archive and stream, and opens a
    reader of its own in another process (fork, spawn, forkserver)."""

    @property
    def stream(self) -> str: ...
    @property
    def archive(self) -> "Archive": ...
    def size(self) -> int:
        """Logical size of the stream in bytes."""
    def readinto(self, buffer: _Buffer, offset: int) -> int:
        """Fills ``buffer`` from ``offset`` without an intermediate copy; returns the number
        of bytes written (fewer only at the end of the stream)."""
    def read(self, offset: int, length: int) -> bytes:
        """``length`` bytes at ``offset`` (fewer only past the end of the stream)."""
    def _batch_array(self, total: int) -> Any:
        """A uint8 numpy array of at least ``total`` bytes to read a batch into: for 128 KiB
        or more, an earlier batch's array once nothing references it any more."""
    def _readinto_ranges(self, buffer: _Buffer, ranges: bytes) -> int:
        """Fills ``buffer`` with the (offset, length) ranges given as little-endian int64
        pairs, one after another, in one call; returns the bytes written."""
    def _read_items(self, index: Any, indices: List[int]) -> List[Any]:
        """The items ``indices`` (negative from the end) of ``index``, a C-contiguous
        ``(n, 2)`` int64 array of (offset, length), as ``numpy.uint8`` views of one array
        filled in one call. ``IndexError`` out of range, ``EOFError`` on a short stream."""

class Archive:
    """An open hexz archive: random-access reads of its streams, info, verification, and
    the files of a file-tree archive (``namelist``, ``stat``, ``read_file``, ``open_file``).

    Thread-safe (reads release the GIL), a context manager, and picklable (pickles as its
    location and options; reopens lazily in the process that uses it)."""

    def __init__(
        self,
        path_or_url: _PathOrUrl,
        *,
        password: Optional[Union[str, bytes]] = None,
        pubkey: Optional[Union[bytes, _PathOrUrl]] = None,
        cache_size: Optional[int] = None,
        cache_dir: Optional[_PathOrUrl] = None,
        allow_restricted: bool = False,
    ) -> None: ...
    @property
    def location(self) -> str:
        """Where the archive lives, as given to ``hexz.open``."""
    @property
    def streams(self) -> List[str]:
        """Names of the streams the archive holds (``"disk"``, ``"memory"``)."""
    @property
    def closed(self) -> bool:
        """Whether ``close()`` was called."""
    def size(self, stream: str = "disk") -> int:
        """Logical size in bytes of ``stream``."""
    def read(self, offset: int, length: int, stream: str = "disk") -> bytes:
        """``length`` bytes of ``stream`` at ``offset`` (fewer only past the end)."""
    def readinto(self, buffer: _Buffer, offset: int, stream: str = "disk") -> int:
        """Fills ``buffer`` (bytearray, memoryview, numpy array) from ``offset``; returns the
        number of bytes written."""
    def reader(self, stream: str = "disk") -> "Reader":
        """A positional reader of ``stream`` with its own read-ahead: reads in index order
        (each starting where the previous ended, or a little past it) get the following
        blocks fetched and decoded in the background; random-order reads fetch nothing
        ahead. The datasets of :mod:`hexz.torch` read through one each."""
    def stream(self, name: str = "disk") -> ArchiveStream:
        """A seekable binary file object (``io.RawIOBase``) over stream ``name``."""
    def info(self) -> Dict[str, Any]:
        """What ``hexz info --json`` reports."""
    def verify(self) -> Dict[str, int]:
        """Checks every page and block; raises ``CorruptArchive`` naming the first bad one.
        Returns ``{"pages", "blocks", "bytes", "archives"}`` checked."""
    def namelist(self) -> List[str]:
        """File-tree archives: every path except the root, sorted; directories end with
        ``/`` (as in ``zipfile``). ``NoFileTree`` for a streams-only archive."""
    def infolist(self) -> List["FileStat"]:
        """File-tree archives: a ``FileStat`` per entry except the root, in ``namelist()``
        order."""
    def stat(self, path: _Path) -> "FileStat":
        """File-tree archives: what the table says about ``path`` (symlinks not followed,
        like ``os.lstat``). ``PathNotFound`` (a ``FileNotFoundError``) when missing."""
    def read_file(self, path: _Path, *, offset: int = 0, length: Optional[int] = None) -> bytes:
        """File-tree archives: the bytes of regular file ``path`` from ``offset`` (at most
        ``length``). ``IsADirectory``/``NotARegularFile`` for other entries."""
    def open_file(self, path: _Path, *, buffering: int = -1) -> Union[io.BufferedReader, ArchiveFile]:
        """File-tree archives: a seekable binary file object over regular file ``path``, an
        ``io.BufferedReader`` over an ``ArchiveFile`` (the raw file with ``buffering=0``)."""
    def _file_index(
        self, prefix: Optional[_Path] = None, suffix: Optional[_Path] = None
    ) -> Tuple[List[str], bytes, bytes]: ...
    def close(self) -> None:
        """Drops this process's reader; later reads raise ``ValueError``."""
    def __enter__(self) -> "Archive": ...
    def __exit__(self, *exc: Any) -> bool: ...
    def __reduce__(self) -> Any: ...

def open(
    path_or_url: _PathOrUrl,
    *,
    password: Optional[Union[str, bytes]] = None,
    pubkey: Optional[Union[bytes, _PathOrUrl]] = None,
    cache_size: Optional[int] = None,
    cache_dir: Optional[_PathOrUrl] = None,
    allow_restricted: bool = False,
) -> Archive:
    """Opens the archive at ``path_or_url`` (a path, or an ``http(s)://`` / ``s3://`` URL).

    ``password`` opens an encrypted archive; ``pubkey`` (32 raw bytes or a ``NAME.pub`` path)
    requires a valid signature by that key; ``cache_size`` is the in-memory block cache in
    bytes (default ``DEFAULT_CACHE_SIZE``, ``WORKER_CACHE_SIZE`` in worker processes);
    ``cache_dir`` keeps fetched blocks of remote archives on disk; ``allow_restricted``
    permits loopback and private addresses in URLs."""

def pack(
    output: _PathOrUrl,
    *,
    disk: Optional[Any] = None,
    memory: Optional[Any] = None,
    compression: str = "lz4",
    level: Optional[int] = None,
    block_size: Optional[int] = None,
    cdc: bool = False,
    base: Optional[_PathOrUrl] = None,
    encrypt: bool = False,
    password: Optional[Union[str, bytes]] = None,
    progress: Optional[Callable[[int, Optional[int]], Any]] = None,
) -> Dict[str, Any]:
    """Packs ``disk`` and/or ``memory`` (each a path, a bytes-like object or a binary file
    object) into a new archive at ``output``; ``progress(done, total)`` is called with input
    bytes (``total`` is ``None`` when an input's size is unknown). Returns what
    ``hexz pack --json`` reports."""

def _unpickle(
    location: str,
    password: Optional[bytes],
    pubkey: Optional[bytes],
    cache_size: Optional[int],
    cache_dir: Optional[str],
    allow_restricted: bool,
) -> Archive: ...
