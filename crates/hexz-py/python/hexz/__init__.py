"""hexz: seekable, deduplicated, compressed snapshot archives (``.hxz``) from Python.

>>> import hexz
>>> with hexz.open("snapshot.hxz") as a:          # doctest: +SKIP
...     header = a.read(0, 512)                     # bytes of the disk stream
...     n = a.readinto(numpy_array, 1 << 20)        # straight into a numpy array
...     info = a.info()                             # what `hexz info --json` says
>>> with hexz.open("tree.hxz") as t:              # doctest: +SKIP
...     names = t.namelist()                        # a tree archive (`hexz pack DIR`)
...     data = t.read_file("imgs/0001.jpg")
...     img = PIL.Image.open(t.open_file("imgs/0001.jpg"))

Reads release the GIL (threads scale with cores), an :class:`Archive` pickles as its
location and options and reopens lazily in the process that uses it (DataLoader workers
under fork, spawn or forkserver), and every error is a :class:`HexzError` subclass.
PyTorch datasets are in :mod:`hexz.torch` (``pip install hexz[torch]``).
"""

from ._errors import (
    ArchiveChanged,
    ArchiveIOError,
    ArchiveNotFound,
    CorruptArchive,
    HexzError,
    InvalidArgument,
    IsADirectory,
    NoFileTree,
    NoSuchStream,
    NotARegularFile,
    PathNotFound,
    PasswordRequired,
    RemoteError,
    SignatureError,
    UnsupportedArchive,
    WrongPassword,
)
from ._hexz import (
    DEFAULT_CACHE_SIZE,
    WORKER_CACHE_SIZE,
    Archive,
    FileStat,
    Reader,
    __version__,
    open,
    pack,
)
from ._stream import ArchiveFile, ArchiveStream

__all__ = [
    "Archive",
    "ArchiveStream",
    "ArchiveFile",
    "FileStat",
    "Reader",
    "open",
    "pack",
    "DEFAULT_CACHE_SIZE",
    "WORKER_CACHE_SIZE",
    "__version__",
    "HexzError",
    "ArchiveNotFound",
    "ArchiveIOError",
    "CorruptArchive",
    "UnsupportedArchive",
    "InvalidArgument",
    "WrongPassword",
    "PasswordRequired",
    "SignatureError",
    "NoSuchStream",
    "NoFileTree",
    "PathNotFound",
    "NotARegularFile",
    "IsADirectory",
    "RemoteError",
    "ArchiveChanged",
]
