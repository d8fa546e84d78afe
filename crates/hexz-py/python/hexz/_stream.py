"""A seekable binary file object over one stream of an archive."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._hexz import Archive


class ArchiveStream(io.RawIOBase):
    """Read-only, seekable raw file over one stream of an :class:`hexz.Archive`.

    Made by ``Archive.stream(name)``. Supports ``read``, ``readinto`` (straight into the
    caller's buffer), ``seek``/``tell`` and everything ``io.RawIOBase`` derives from them, so
    ``tarfile``, ``shutil.copyfileobj``, PIL or ``numpy.fromfile``-style readers can use it.
    Wrap it in ``io.BufferedReader`` for many tiny reads. Closing it does not close the
    archive.
    """

    def __init__(self, archive: "Archive", name: str = "disk") -> None:
        super().__init__()
        self._archive = archive
        self._name = name
        self._size = archive.size(name)
        self._pos = 0

    @property
    def name(self) -> str:
        """``"<location>:<stream>"``."""
        return f"{self._archive.location}:{self._name}"

    @property
    def mode(self) -> str:
        return "rb"

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def writable(self) -> bool:
        return False

    def readinto(self, buffer) -> int:  # type: ignore[override]
        self._checkClosed()
        n = self._archive.readinto(buffer, self._pos, self._name)
        self._pos += n
        return n

    def read(self, size: int = -1) -> bytes:
        self._checkClosed()
        if size is None or size < 0:
            size = max(self._size - self._pos, 0)
        data = self._archive.read(self._pos, size, self._name)
        self._pos += len(data)
        return data

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

    def __repr__(self) -> str:
        return f"<hexz.ArchiveStream {self.name!r} pos={self._pos} size={self._size}>"
