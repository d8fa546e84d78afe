"""Type stubs of the compiled module ``hexz._hexz`` (import ``hexz`` instead)."""

import os
from typing import Any, Callable, Dict, List, Optional, Union

from ._stream import ArchiveStream

__version__: str
DEFAULT_CACHE_SIZE: int
WORKER_CACHE_SIZE: int

_PathOrUrl = Union[str, "os.PathLike[str]"]
_Buffer = Any  # any object exporting a writable, C-contiguous buffer

class Archive:
    """An open hexz archive: random-access reads of its streams, info, verification.

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
    def stream(self, name: str = "disk") -> ArchiveStream:
        """A seekable binary file object (``io.RawIOBase``) over stream ``name``."""
    def info(self) -> Dict[str, Any]:
        """What ``hexz info --json`` reports."""
    def verify(self) -> Dict[str, int]:
        """Checks every page and block; raises ``CorruptArchive`` naming the first bad one.
        Returns ``{"pages", "blocks", "bytes", "archives"}`` checked."""
    def namelist(self) -> List[str]:
        """File-tree archives only (hexz issue #11): raises ``NotImplementedError``."""
    def stat(self, path: str) -> Any:
        """File-tree archives only (hexz issue #11): raises ``NotImplementedError``."""
    def read_file(self, path: str) -> bytes:
        """File-tree archives only (hexz issue #11): raises ``NotImplementedError``."""
    def open_file(self, path: str) -> Any:
        """File-tree archives only (hexz issue #11): raises ``NotImplementedError``."""
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
