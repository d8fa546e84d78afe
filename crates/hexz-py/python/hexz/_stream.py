"""A seekable binary file object over one stream of an archive."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._hexz import Archive


class _Reader(io.RawIOBase):
    """What both file objects share: read-only, seekable over ``_size`` bytes at ``_pos``."""

    _size: int
    _pos: int

    @property
    def mode(self) -> str:
        return "rb"

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def writable(self) -> bool:
        return False

    def readall(self) -> bytes:
        return self.read(-1)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._checkClosed()
        if whence == io.SEEK_SET:
            pos = offset
        elif whence == io.SEEK_CUR:
            pos = self._pos + offset
        elif whence == io.SEEK_END:
            pos = self._size + offset
        else:
            raise ValueError(f"invalid whence ({whence}, should be 0, 1 or 2)")
        if pos < 0:
            raise ValueError(f"negative seek position {pos}")
        self._pos = pos
        return pos

    def tell(self) -> int:
        self._checkClosed()
        return self._pos

    def __len__(self) -> int:
        return self._size


class ArchiveStream(_Reader):
    """Read-only, seekable raw file over one stream of an :class:`hexz.Archive`.

    Made by ``Archive.stream(name)``. Supports ``read``, ``readinto`` (straight into the
    caller's buffer), ``seek``/``tell`` and everything ``io.RawIOBase`` derives from them, so
    ``tarfile``, ``shutil.copyfileobj``, PIL or ``numpy.fromfile``-style readers can use it.
    Wrap it in ``io.BufferedReader`` for many tiny reads. Reading on from where the last
    read stopped gets the following blocks fetched and decoded in the background (its own
    :class:`hexz.Reader`). Closing it does not close the archive.
    """

    def __init__(self, archive: "Archive", name: str = "disk") -> None:
        super().__init__()
        self._archive = archive
        self._name = name
        self._reader = archive.reader(name)  # its own read-ahead for sequential reading
        self._size = archive.size(name)
        self._pos = 0

    @property
    def name(self) -> str:
        """``"<location>:<stream>"``."""
        return f"{self._archive.location}:{self._name}"


    def readinto(self, buffer) -> int:  # type: ignore[override]
        self._checkClosed()
        n = self._reader.readinto(buffer, self._pos)
        self._pos += n
        return n

    def read(self, size: int = -1) -> bytes:
        self._checkClosed()
        if size is None or size < 0:
            size = max(self._size - self._pos, 0)
        data = self._reader.read(self._pos, size)
        self._pos += len(data)
        return data


    def __repr__(self) -> str:
        return f"<hexz.ArchiveStream {self.name!r} pos={self._pos} size={self._size}>"


class ArchiveFile(_Reader):
    """Read-only, seekable raw file over one regular file of a file-tree archive.

    ``Archive.open_file(path)`` returns one wrapped in an ``io.BufferedReader`` (``.raw`` is
    this object; ``buffering=0`` gives it unwrapped). ``readinto`` decodes straight into the
    caller's buffer with the GIL released, reading only the archive blocks the range spans.
    Where the file lies in the archive is looked up (and checked) once, when it is opened.
    Closing it does not close the archive; it pickles as the archive and the path.
    """

    def __init__(self, archive: "Archive", path: str, start: int, size: int) -> None:
        super().__init__()
        self._archive = archive
        self._reader = archive.reader("disk")  # its own read-ahead for sequential reading
        self._path = path
        self._start = start
        self._size = size
        self._pos = 0

    @property
    def name(self) -> str:
        """The file's path in the archive."""
        return self._path


    def readinto(self, buffer) -> int:  # type: ignore[override]
        self._checkClosed()
        with memoryview(buffer) as mv, mv.cast("B") as b:
            n = min(len(b), self._size - self._pos)
            if n <= 0:
                return 0
            got = self._reader.readinto(b[:n], self._start + self._pos)
        self._pos += got
        return got

    def read(self, size: int = -1) -> bytes:
        self._checkClosed()
        left = max(self._size - self._pos, 0)
        n = left if size is None or size < 0 else min(size, left)
        if n == 0:
            return b""
        data = self._reader.read(self._start + self._pos, n)
        self._pos += len(data)
        return data


    def __reduce__(self):
        return (_reopen_file, (self._archive, self._path, self._pos))

    def __repr__(self) -> str:
        return f"<hexz.ArchiveFile {self._path!r} pos={self._pos} size={self._size}>"


def _open_file(archive: "Archive", path: str, start: int, size: int, buffering: int = -1):
    """What ``Archive.open_file`` returns (the range was checked by the caller)."""
    raw = ArchiveFile(archive, path, start, size)
    if buffering == 0:
        return raw
    return io.BufferedReader(raw, io.DEFAULT_BUFFER_SIZE if buffering < 0 else buffering)


def _reopen_file(archive: "Archive", path: str, pos: int) -> ArchiveFile:
    f = archive.open_file(path, buffering=0)
    f.seek(pos)
    return f
