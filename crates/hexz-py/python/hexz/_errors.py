"""Exception classes raised by hexz.

Every error hexz raises is a :class:`HexzError`; the subclass says what kind of failure it
is, and the message is the same one line the ``hexz`` command prints. Where a builtin fits,
the class also derives from it (``ArchiveNotFound`` and ``PathNotFound`` are
``FileNotFoundError``\ s, ``InvalidArgument`` a ``ValueError``), so generic handlers keep working.

Each exception has a ``transient`` attribute: ``True`` when retrying later may succeed (a
remote timeout or 5xx, an interrupted read).
"""


class HexzError(Exception):
    """Base class of every hexz error."""

    transient: bool = False


class ArchiveNotFound(HexzError, FileNotFoundError):
    """The archive (or a thin snapshot's parent, or a remote object) does not exist."""


class ArchiveIOError(HexzError, OSError):
    """Reading or writing a local file failed (permissions, disk full, I/O error)."""


class CorruptArchive(HexzError):
    """A structure or block of the archive is damaged: checksum, hash or decode failure."""


class UnsupportedArchive(HexzError):
    """Not a hexz archive, or a format version or feature this build cannot read."""


class InvalidArgument(HexzError, ValueError):
    """An argument is invalid (block size, level, a parent that does not match, ...)."""


class WrongPassword(HexzError):
    """The password does not open the encrypted archive."""


class PasswordRequired(WrongPassword):
    """The archive is encrypted and no password was given."""


class SignatureError(HexzError):
    """The archive is unsigned, signed by another key, or its signature does not verify."""


class NoSuchStream(HexzError, LookupError):
    """The archive has no such stream (``"disk"`` or ``"memory"``)."""


class NoFileTree(HexzError, LookupError):
    """The archive holds byte streams only, not a file tree (``namelist``, ``stat``,
    ``read_file``, ``open_file`` and ``hexz.torch.FileDataset`` need one)."""


class PathNotFound(HexzError, FileNotFoundError):
    """No entry at that path in a file-tree archive (``errno`` is ``ENOENT``)."""


class NotARegularFile(HexzError, OSError):
    """``read_file``/``open_file`` of an entry that is not a regular file (a symlink, a
    device node, ...; symlinks are not followed)."""


class IsADirectory(NotARegularFile, IsADirectoryError):
    """``read_file``/``open_file`` of a directory."""


class RemoteError(HexzError, OSError):
    """A remote store (HTTP, S3) failed; see ``transient``."""


class ArchiveChanged(RemoteError):
    """The remote archive changed while it was being read (its ETag no longer matches)."""


__all__ = [
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
