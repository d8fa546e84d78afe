"""PyTorch datasets over hexz archives.

- :class:`RecordDataset`: map-style, one fixed-size record per index.
- :class:`IndexDataset`: map-style, one ``(offset, length)`` range per index.
- :class:`ShardedIterable`: an ``IterableDataset`` that splits the records by DDP rank and
  DataLoader worker, shuffles them deterministically per ``(seed, epoch)`` while reading
  nearby records together, and resumes mid-epoch from :meth:`ShardedIterable.state_dict`,
  also with another number of workers.
- :class:`FileDataset`: map-style, one regular file of a file-tree archive per index
  (``hexz pack DIR``), filtered by path prefix and suffix.

Items are 1-D ``numpy.uint8`` arrays (or whatever ``transform`` returns for one). Every
dataset takes a path, a URL or an already opened :class:`hexz.Archive` (to pass a password
or other options); it pickles as the archive's location and options, so it works with
``DataLoader(num_workers>0)`` under fork, spawn and forkserver, and with
``DistributedSampler``.

Every dataset reads through a :class:`hexz.Reader` of its own: records read in index
order (``num_workers=0``, or each worker's contiguous share) get the following blocks
fetched and decoded in the background while Python handles the current one; random-order
reads (``shuffle=True``) fetch nothing ahead.

Cost of one DataLoader worker: the archive is reopened in the worker on first use, with a
block cache of at most ``hexz.WORKER_CACHE_SIZE`` (32 MiB, filled only as blocks are read)
and a 2 MiB read-ahead window, unless ``cache_size`` was given to ``hexz.open``, and three
threads (one decode, two IO) rather than a pool per core. Batches of 128 KiB or more are read
into arrays the dataset's reader reuses once all of a batch's items are gone (at most 32 MiB
of them).

The pipe that carries a worker's batches to the main process holds 64 KiB by default, so a
batch of a few MiB crosses it in dozens of hand-offs between the two processes, and that, not
reading, caps a DataLoader with workers. The first read of a hexz dataset in a DataLoader
worker enlarges that pipe to 1 MiB (or ``/proc/sys/fs/pipe-max-size`` if smaller); the kernel
allocates its pages only as data waits in it. ``HEXZ_WORKER_PIPE=0`` leaves it as it is.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Union

import numpy as np

try:
    from torch.utils.data import Dataset, IterableDataset, get_worker_info
except ImportError as e:  # pragma: no cover - exercised only without torch
    raise ImportError(
        "hexz.torch needs PyTorch: pip install 'hexz[torch]' (or pip install torch)"
    ) from e

from . import Archive, Reader
from . import open as _open

Source = Union[str, "os.PathLike[str]", Archive]

__all__ = ["RecordDataset", "IndexDataset", "FileDataset", "ShardedIterable"]


def _archive(source: Source) -> Archive:
    if isinstance(source, Archive):
        return source
    return _open(source)


#: Size the pipe carrying a DataLoader worker's batches is enlarged to (see the module doc).
WORKER_PIPE_BYTES = 1 << 20
_F_SETPIPE_SZ = 1031  # Linux fcntl commands (fcntl.F_SETPIPE_SZ from Python 3.10)
_F_GETPIPE_SZ = 1032
_pipe_checked_pid = 0


def _widen_worker_pipe() -> None:
    """Once per process, in a DataLoader worker: enlarges the pipe of the queue its batches
    go to the main process through (``data_queue`` of torch's worker loop) to
    :data:`WORKER_PIPE_BYTES`. Anything unexpected (another torch layout, a platform without
    pipe sizes, a limit) leaves the pipe as it is: only speed depends on it."""
    global _pipe_checked_pid
    pid = os.getpid()
    if _pipe_checked_pid == pid:
        return
    _pipe_checked_pid = pid
    if get_worker_info() is None or os.environ.get("HEXZ_WORKER_PIPE") == "0":
        return
    try:
        import fcntl

        f = sys._getframe(1)
        while f is not None and not (
            f.f_code.co_name == "_worker_loop"
            and f.f_globals.get("__name__") == "torch.utils.data._utils.worker"
        ):
            f = f.f_back
        if f is None:
            return
        fd = f.f_locals["data_queue"]._writer.fileno()
        with open("/proc/sys/fs/pipe-max-size") as m:
            want = min(WORKER_PIPE_BYTES, int(m.read()))
        if fcntl.fcntl(fd, _F_GETPIPE_SZ) < want:
            fcntl.fcntl(fd, _F_SETPIPE_SZ, want)
    except Exception:  # only speed depends on it
        pass


def _normalise_index(index: Any) -> np.ndarray:
    arr = np.asarray(index, dtype=np.int64)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise ValueError(
            f"index must be a sequence of (offset, length) pairs, not an array of shape {arr.shape}"
        )
    if arr.size and (arr.min() < 0):
        bad = int(np.argmax((arr < 0).any(axis=1)))
        raise ValueError(f"index entry {bad} has a negative offset or length: {tuple(arr[bad])}")
    return np.ascontiguousarray(arr)


def _check_ranges(arr: np.ndarray, size: int, what: str) -> None:
    if arr.size == 0:
        return
    ends = arr[:, 0] + arr[:, 1]
    if ends.max() > size:
        bad = int(np.argmax(ends > size))
        off, ln = (int(x) for x in arr[bad])
        raise ValueError(
            f"index entry {bad} (offset {off}, length {ln}) runs past the end of {what} "
            f"({size} bytes)"
        )


class _Reader:
    """Shared item reading: one numpy array per range, filled in place through the
    dataset's own :class:`hexz.Reader`, so reads in index order are read ahead (the next
    blocks decoded in the background) and random-order reads fetch nothing extra."""

    _archive: Archive
    _reader: Reader
    stream: str
    transform: Optional[Callable[[np.ndarray], Any]]

    def _read(self, offset: int, length: int) -> Any:
        _widen_worker_pipe()
        out = np.empty(length, dtype=np.uint8)
        n = self._reader.readinto(out, offset)
        if n != length:  # the archive is shorter than when the dataset was made
            raise EOFError(
                f"{self._archive.location}:{self.stream}: read {n} of {length} bytes at offset {offset}"
            )
        return self.transform(out) if self.transform is not None else out

    def _read_many(self, ranges: np.ndarray) -> List[Any]:
        return _read_ranges(self._reader, ranges, self.transform, f"{self._archive.location}:{self.stream}")


def _read_ranges(
    reader: Reader,
    ranges: np.ndarray,
    transform: Optional[Callable[[np.ndarray], Any]],
    what: str,
) -> List[Any]:
    """The items for the ``(offset, length)`` rows of ``ranges``, read in one call (one
    release of the GIL; ranges that follow each other in the archive read as one, their
    blocks decoded in parallel). Each item is a view of one array holding the whole batch."""
    _widen_worker_pipe()
    lengths = ranges[:, 1]
    ends = np.cumsum(lengths)
    total = int(ends[-1]) if len(ends) else 0
    # An earlier batch's array when none of its items is alive any more (no fresh memory to
    # fault in and zero per batch).
    buf = reader._batch_array(total)[:total]
    n = reader._readinto_ranges(buf, np.ascontiguousarray(ranges, dtype="<i8").tobytes())
    if n != total:  # the archive is shorter than when the dataset was made
        raise EOFError(f"{what}: read {n} of the {total} bytes of a batch of {len(ranges)} items")
    items = [buf[a:b] for a, b in zip((ends - lengths).tolist(), ends.tolist())]
    if transform is not None:
        return [transform(x) for x in items]
    return items


def _checked_indices(indices: Sequence[int], n: int, what: str) -> np.ndarray:
    """``indices`` as int64, negative ones counted from the end; ``IndexError`` if any is
    out of range."""
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    idx = np.where(idx < 0, idx + n, idx)
    bad = (idx < 0) | (idx >= n)
    if bad.any():
        raise IndexError(f"{what} {int(np.asarray(indices).reshape(-1)[np.argmax(bad)])} out of range ({n} {what}s)")
    return idx


class RecordDataset(_Reader, Dataset):
    """Map-style dataset of fixed-size records: item ``i`` is the ``record_size`` bytes of
    ``stream`` at offset ``i * record_size``. A trailing partial record is not an item.

    Args:
        path_or_url: archive path or URL, or an open :class:`hexz.Archive`.
        record_size: bytes per record.
        stream: ``"disk"`` or ``"memory"``.
        transform: applied to each item (a ``numpy.uint8`` array of ``record_size``).
    """

    def __init__(
        self,
        path_or_url: Source,
        record_size: int,
        *,
        stream: str = "disk",
        transform: Optional[Callable[[np.ndarray], Any]] = None,
    ) -> None:
        if int(record_size) <= 0:
            raise ValueError(f"record_size must be positive, not {record_size}")
        self._archive = _archive(path_or_url)
        self.stream = stream
        self._reader = self._archive.reader(stream)
        self.record_size = int(record_size)
        self.transform = transform
        self._len = self._archive.size(stream) // self.record_size

    @property
    def archive(self) -> Archive:
        """The archive the records come from."""
        return self._archive

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, i: int) -> Any:
        i = int(i)
        if i < 0:
            i += self._len
        if not 0 <= i < self._len:
            raise IndexError(f"record {i} out of range ({self._len} records)")
        return self._read(i * self.record_size, self.record_size)

    def __getitems__(self, indices: Sequence[int]) -> List[Any]:
        """The items of a DataLoader batch, read in one call (the DataLoader calls this
        rather than ``__getitem__`` per index). Items are views of one array per batch."""
        idx = _checked_indices(indices, self._len, "record")
        rs = self.record_size
        return self._read_many(np.stack([idx * rs, np.full_like(idx, rs)], axis=1))


class IndexDataset(_Reader, Dataset):
    """Map-style dataset over explicit ranges: item ``i`` is ``length`` bytes of ``stream``
    at ``offset``, where ``index[i] == (offset, length)``.

    Args:
        path_or_url: archive path or URL, or an open :class:`hexz.Archive`.
        index: a list of ``(offset, length)`` pairs or an ``(N, 2)`` integer numpy array;
            checked against the stream's size up front.
        stream: ``"disk"`` or ``"memory"``.
        transform: applied to each item (a ``numpy.uint8`` array of ``length`` bytes).
    """

    def __init__(
        self,
        path_or_url: Source,
        index: Union[Sequence[Sequence[int]], np.ndarray],
        *,
        stream: str = "disk",
        transform: Optional[Callable[[np.ndarray], Any]] = None,
    ) -> None:
        self._archive = _archive(path_or_url)
        self.stream = stream
        self._reader = self._archive.reader(stream)
        self.transform = transform
        self.index = _normalise_index(index)
        _check_ranges(self.index, self._archive.size(stream), f"{self._archive.location}:{stream}")

    @property
    def archive(self) -> Archive:
        """The archive the ranges come from."""
        return self._archive

    def __len__(self) -> int:
        return int(self.index.shape[0])

    def __getitem__(self, i: int) -> Any:
        off, ln = self.index[int(i)]  # IndexError past the end, negative indices as numpy
        return self._read(int(off), int(ln))

    def __getitems__(self, indices: Sequence[int]) -> List[Any]:
        """The items of a DataLoader batch, read in one call (the DataLoader calls this
        rather than ``__getitem__`` per index): ranges that follow each other in the
        archive are read as one, their blocks decoded in parallel. Items are views of one
        array per batch. The lookup of the ranges, the array and the views are made in that
        one call, with no Python-level work per item."""
        _widen_worker_pipe()
        if not isinstance(indices, list):
            indices = np.asarray(indices, dtype=np.int64).reshape(-1).tolist()
        items = self._reader._read_items(self.index, indices)
        if self.transform is not None:
            return [self.transform(x) for x in items]
        return items


class FileDataset(Dataset):
    """Map-style dataset over the regular files of a file-tree archive (``hexz pack DIR``):
    item ``i`` is the bytes of file ``paths[i]`` as a ``numpy.uint8`` array (or what
    ``transform`` returns for that array).

    The files are those whose path (relative to the tree's root, as in
    :meth:`hexz.Archive.namelist`) starts with ``prefix`` and ends with ``suffix``, sorted by
    path; hard links count as files, symlinks, directories and other entries are left out.
    The list is made here (walking only the directory ``prefix`` names), with where each
    file lies in the archive, so an item is one ``readinto`` that decodes only the blocks
    the file spans, with no lookup; files read in path order are read ahead.

    The dataset pickles lean: as the archive's location and options, ``prefix``,
    ``suffix``, ``transform`` and the number of files, never the list itself, whatever the
    size of the tree. A copy unpickled in another process (a spawn or forkserver
    DataLoader worker) makes the list again from the archive's file table when first
    needed, and raises ``RuntimeError`` if it no longer has the same number of files. Fork
    workers inherit the parent's list as it is.

    Args:
        path_or_url: archive path or URL, or an open :class:`hexz.Archive`.
        prefix: keep paths starting with this (``"train/"``: the files below ``train``).
        suffix: keep paths ending with this (``".jpg"``).
        transform: applied to each item (a ``numpy.uint8`` array of the file's bytes), e.g.
            a function decoding an image; ``bytes(array)`` or ``io.BytesIO(array)`` give
            what byte-oriented decoders want.

    Raises ``hexz.NoFileTree`` for an archive that holds byte streams only.
    """

    def __init__(
        self,
        path_or_url: Source,
        *,
        prefix: Optional[str] = None,
        suffix: Optional[str] = None,
        transform: Optional[Callable[[np.ndarray], Any]] = None,
    ) -> None:
        self._archive = _archive(path_or_url)
        self._reader = self._archive.reader("disk")
        self.prefix = prefix
        self.suffix = suffix
        self.transform = transform
        self._files: Optional["tuple[List[str], np.ndarray, np.ndarray]"] = self._list()
        self._n = len(self._files[0])

    def _list(self) -> "tuple[List[str], np.ndarray, np.ndarray]":
        names, offs, sizes = self._archive._file_index(self.prefix, self.suffix)
        offsets = np.frombuffer(offs, dtype="<u8").astype(np.int64)
        lengths = np.frombuffer(sizes, dtype="<u8").astype(np.int64)
        return names, offsets, lengths

    def _index(self) -> "tuple[List[str], np.ndarray, np.ndarray]":
        f = self._files
        if f is None:
            f = self._list()
            if len(f[0]) != self._n:
                raise RuntimeError(
                    f"{self._archive.location}: {len(f[0])} files match prefix={self.prefix!r} "
                    f"suffix={self.suffix!r} now, {self._n} when the dataset was made"
                )
            self._files = f
        return f

    def __getstate__(self) -> Dict[str, Any]:
        state = self.__dict__.copy()
        state["_files"] = None  # made again from the archive where it is unpickled
        return state

    @property
    def archive(self) -> Archive:
        """The archive the files come from."""
        return self._archive

    @property
    def paths(self) -> List[str]:
        """Path of each file, in item order."""
        return self._index()[0]

    @property
    def sizes(self) -> np.ndarray:
        """Byte length of each file, in item order."""
        return self._index()[2]

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i: int) -> Any:
        i = int(i)
        n = self._n
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"file {i} out of range ({n} files)")
        _widen_worker_pipe()
        paths, offsets, sizes = self._index()
        size = int(sizes[i])
        out = np.empty(size, dtype=np.uint8)
        if size:
            got = self._reader.readinto(out, int(offsets[i]))
            if got != size:  # the archive is shorter than when the dataset was made
                raise EOFError(
                    f"{self._archive.location}: read {got} of {size} bytes of {paths[i]!r}"
                )
        return self.transform(out) if self.transform is not None else out

    def __getitems__(self, indices: Sequence[int]) -> List[Any]:
        """The files of a DataLoader batch, read in one call (the DataLoader calls this
        rather than ``__getitem__`` per index). Items are views of one array per batch."""
        idx = _checked_indices(indices, self._n, "file")
        _, offsets, sizes = self._index()
        ranges = np.stack([offsets[idx], sizes[idx]], axis=1)
        return _read_ranges(self._reader, ranges, self.transform, self._archive.location)


def _dist_rank_world() -> "tuple[int, int]":
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
    except Exception:  # pragma: no cover - no distributed support compiled in
        pass
    return 0, 1


class ShardedIterable(_Reader, IterableDataset):
    """Iterable dataset that shards records across DDP ranks and DataLoader workers.

    Order: the records are cut into blocks of ``block_records`` consecutive records; with
    ``shuffle`` the blocks are permuted and the records within each block too, from a
    generator seeded by ``(seed, epoch)`` — so the order is the same on every rank, worker
    count and run, and nearby records (which share archive blocks and cache entries) are
    read close together in time.

    Sharding: rank ``r`` of ``world_size`` takes the ``r``-th contiguous share of that
    order (padded by wrapping around, like ``DistributedSampler``, so every rank yields the
    same number of items; ``drop_last=True`` drops the remainder instead). Within a rank, the
    share is cut into units of ``batch_size`` items dealt round-robin to the DataLoader's
    workers: with the same ``batch_size`` as the DataLoader, batches come out of the loader
    in exactly the rank's order, whatever the number of workers.

    Resuming: ``state_dict(consumed=n)`` after the training loop took ``n`` items of this
    epoch (from the DataLoader; without ``consumed``, what this process's own iteration
    yielded, right for ``num_workers=0``), then ``load_state_dict`` on a new dataset makes
    the next iteration start at item ``n`` of the rank's order — with any number of workers.

    Args:
        path_or_url: archive path or URL, or an open :class:`hexz.Archive`.
        record_size: bytes per fixed-size record (or give ``index``).
        index: ``(offset, length)`` pairs instead of fixed-size records.
        seed: seed of the shuffle.
        shuffle: shuffle per epoch (otherwise the archive's order).
        stream: ``"disk"`` or ``"memory"``.
        transform: applied to each item.
        block_records: records read together (the unit of the shuffle).
        batch_size: items per unit dealt to a worker; match the DataLoader's.
        rank, world_size: override what ``torch.distributed`` says.
        drop_last: drop the items that do not divide evenly among ranks instead of padding.
    """

    def __init__(
        self,
        path_or_url: Source,
        record_size: Optional[int] = None,
        *,
        index: Optional[Union[Sequence[Sequence[int]], np.ndarray]] = None,
        seed: int = 0,
        shuffle: bool = True,
        stream: str = "disk",
        transform: Optional[Callable[[np.ndarray], Any]] = None,
        block_records: int = 64,
        batch_size: int = 1,
        rank: Optional[int] = None,
        world_size: Optional[int] = None,
        drop_last: bool = False,
    ) -> None:
        if (record_size is None) == (index is None):
            raise ValueError("give exactly one of record_size and index")
        if block_records <= 0 or batch_size <= 0:
            raise ValueError("block_records and batch_size must be positive")
        self._archive = _archive(path_or_url)
        self.stream = stream
        self._reader = self._archive.reader(stream)
        self.transform = transform
        size = self._archive.size(stream)
        if index is not None:
            self.index: Optional[np.ndarray] = _normalise_index(index)
            _check_ranges(self.index, size, f"{self._archive.location}:{stream}")
            self.record_size = None
            self._n = int(self.index.shape[0])
        else:
            if int(record_size) <= 0:  # type: ignore[arg-type]
                raise ValueError(f"record_size must be positive, not {record_size}")
            self.index = None
            self.record_size = int(record_size)  # type: ignore[arg-type]
            self._n = size // self.record_size
        self.seed = int(seed)
        self.shuffle = bool(shuffle)
        self.block_records = int(block_records)
        self.batch_size = int(batch_size)
        self._rank_override = rank
        self._world_override = world_size
        self.drop_last = bool(drop_last)
        self.epoch = 0
        self._start = 0  # items of this epoch already consumed (from load_state_dict)
        self._yielded = 0

    @property
    def archive(self) -> Archive:
        """The archive the records come from."""
        return self._archive

    def _rank_world(self) -> "tuple[int, int]":
        r, w = _dist_rank_world()
        if self._rank_override is not None:
            r = int(self._rank_override)
        if self._world_override is not None:
            w = int(self._world_override)
        if not 0 <= r < w:
            raise ValueError(f"rank {r} is not in 0..{w - 1}")
        return r, w

    def set_epoch(self, epoch: int) -> None:
        """Selects the epoch (its shuffle) for the next iteration, like
        ``DistributedSampler.set_epoch``; resets the resume position."""
        if int(epoch) != self.epoch:
            self._start = 0
        self.epoch = int(epoch)
        self._yielded = 0

    def order(self) -> np.ndarray:
        """Record numbers of the whole epoch in shuffled order (before sharding)."""
        n = self._n
        if not self.shuffle:
            return np.arange(n, dtype=np.int64)
        rng = np.random.default_rng([self.seed, self.epoch])
        b = self.block_records
        nblocks = (n + b - 1) // b
        out = np.empty(n, dtype=np.int64)
        pos = 0
        for blk in rng.permutation(nblocks):
            lo = int(blk) * b
            hi = min(lo + b, n)
            out[pos : pos + hi - lo] = lo + rng.permutation(hi - lo)
            pos += hi - lo
        return out

    def rank_order(self) -> np.ndarray:
        """Record numbers this rank yields in this epoch, in order."""
        rank, world = self._rank_world()
        order = self.order()
        n = len(order)
        if self.drop_last:
            per = n // world
        else:
            per = -(-n // world) if n else 0
            if per * world > n:
                order = np.concatenate([order, order[: per * world - n]])
        return order[rank * per : (rank + 1) * per]

    def __len__(self) -> int:
        """Items this rank yields per epoch (all workers together)."""
        _, world = self._rank_world()
        return self._n // world if self.drop_last else (-(-self._n // world) if self._n else 0)

    def __iter__(self) -> Iterator[Any]:
        todo = self.rank_order()[self._start :]
        info = get_worker_info()
        wid, nw = (info.id, info.num_workers) if info is not None else (0, 1)
        bs = self.batch_size
        for u in range(wid, -(-len(todo) // bs) if len(todo) else 0, nw):
            # One read per unit: records of a shuffle block that lie next to each other
            # in the archive are read as one.
            recs = np.asarray(todo[u * bs : (u + 1) * bs], dtype=np.int64)
            if self.index is not None:
                ranges = self.index[recs]
            else:
                rs = self.record_size
                ranges = np.stack([recs * rs, np.full_like(recs, rs)], axis=1)  # type: ignore[operator]
            for item in self._read_many(ranges):
                self._yielded += 1
                yield item

    def state_dict(self, consumed: Optional[int] = None) -> Dict[str, int]:
        """Where this rank is in the epoch: ``{"seed", "epoch", "consumed"}``.

        ``consumed``: items of this epoch the training loop has taken on this rank; default
        what this process iterated itself (plus where it resumed from)."""
        done = self._start + self._yielded if consumed is None else int(consumed)
        return {"seed": self.seed, "epoch": self.epoch, "consumed": done}

    def load_state_dict(self, state: Dict[str, int]) -> None:
        """Resumes at ``state``: the next iteration yields the rest of that epoch."""
        if int(state.get("seed", self.seed)) != self.seed:
            raise ValueError(
                f"state was saved with seed {state['seed']}, this dataset has seed {self.seed}"
            )
        self.epoch = int(state["epoch"])
        self._start = int(state["consumed"])
        self._yielded = 0

