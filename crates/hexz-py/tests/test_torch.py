"""hexz.torch datasets with real DataLoader workers (fork and spawn), DistributedSampler and
ShardedIterable sharding, shuffling and resuming."""

from __future__ import annotations

import os

import numpy as np
import pytest

if os.environ.get("HEXZ_REQUIRE_TORCH") == "1":
    # scripts/test.sh installed torch: a torch that does not import fails the run.
    import torch
else:
    torch = pytest.importorskip(
        "torch",
        reason="torch is not installed in this virtualenv, so the hexz.torch tests do not "
        "run (HEXZ_TORCH=1 scripts/test-py.sh installs it from PyPI, ~5 GB)",
    )
from torch.utils.data import DataLoader, DistributedSampler  # noqa: E402

import hexz  # noqa: E402
from hexz.torch import FileDataset, IndexDataset, RecordDataset, ShardedIterable  # noqa: E402
from conftest import NFILES, NRECORDS, RECORD  # noqa: E402


def record_no(item) -> int:
    arr = item.numpy() if hasattr(item, "numpy") else np.asarray(item)
    return int(arr[:8].view(np.uint64)[0])


def as_list(batch):
    """collate_fn keeping numpy items (module level: picklable for spawn workers)."""
    return batch


def expected(data: bytes, i: int) -> bytes:
    return data[i * RECORD : (i + 1) * RECORD]


def test_record_dataset_basics(records):
    path, data = records
    ds = RecordDataset(path, RECORD)
    assert len(ds) == NRECORDS
    item = ds[17]
    assert isinstance(item, np.ndarray) and item.dtype == np.uint8 and item.shape == (RECORD,)
    assert item.tobytes() == expected(data, 17)
    assert ds[-1].tobytes() == expected(data, NRECORDS - 1)
    with pytest.raises(IndexError):
        ds[NRECORDS]
    odd = RecordDataset(path, 5000)  # trailing partial record is not an item
    assert len(odd) == len(data) // 5000
    t = RecordDataset(hexz.open(path), RECORD, transform=lambda a: int(a[8]))
    assert t[3] == data[3 * RECORD + 8]


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_dataloader_two_workers_every_record_once(records, method):
    path, data = records
    ds = RecordDataset(path, RECORD)
    ds[0]  # the parent reads (and starts its pools) before the workers exist
    hexz.open(path).read(0, 1 << 20)
    dl = DataLoader(ds, batch_size=32, num_workers=2, multiprocessing_context=method,
                    collate_fn=as_list, shuffle=True,
                    generator=torch.Generator().manual_seed(1))
    seen = np.zeros(NRECORDS, dtype=np.int64)
    for batch in dl:
        for item in batch:
            i = record_no(item)
            assert item.tobytes() == expected(data, i)
            seen[i] += 1
    assert (seen == 1).all(), np.flatnonzero(seen != 1)[:10]


def test_default_collate_gives_tensors(records):
    path, data = records
    dl = DataLoader(RecordDataset(path, RECORD), batch_size=8, num_workers=2)
    first = next(iter(dl))
    assert isinstance(first, torch.Tensor) and first.shape == (8, RECORD)
    assert first.dtype == torch.uint8
    assert first.numpy().tobytes() == data[: 8 * RECORD]


def test_index_dataset_variable_lengths(records):
    path, data = records
    rng = np.random.default_rng(4)
    offs = rng.integers(0, len(data) - 200_000, 500)
    lens = rng.integers(1, 150_000, 500)
    index = np.stack([offs, lens], axis=1)
    ds = IndexDataset(path, index)
    assert len(ds) == 500
    dl = DataLoader(ds, batch_size=None, num_workers=2)
    for i, item in enumerate(dl):
        o, n = int(offs[i]), int(lens[i])
        assert item.numpy().tobytes() == data[o : o + n]
    as_pairs = IndexDataset(path, [(0, 10), (RECORD, 8)])
    assert as_pairs[1].tobytes() == expected(data, 1)[:8]
    with pytest.raises(ValueError, match="runs past the end"):
        IndexDataset(path, [(len(data) - 5, 10)])
    with pytest.raises(ValueError, match="pairs"):
        IndexDataset(path, [1, 2, 3])


def test_getitems_batches_equal_single_items(records, many_files):
    """What a DataLoader batch reads in one call (`__getitems__`) is what `__getitem__`
    gives per index: in order, shuffled, with repeats and negative indices."""
    path, data = records
    rng = np.random.default_rng(6)
    offs = rng.integers(0, len(data) - 200_000, 300)
    index = np.stack([offs, rng.integers(0, 150_000, 300)], axis=1)
    index[5:40, 0] = np.cumsum(np.r_[0, index[5:39, 1]]) + 1000  # a contiguous run
    fpath, _ = many_files
    for ds in (RecordDataset(path, RECORD), IndexDataset(path, index),
               FileDataset(fpath, prefix="train/")):
        n = len(ds)
        for idx in (list(range(64)), rng.permutation(n)[:50].tolist(), [3, 3, -1, 0], []):
            got = ds.__getitems__(idx)
            assert len(got) == len(idx)
            for i, item in zip(idx, got):
                assert isinstance(item, np.ndarray) and item.dtype == np.uint8
                assert item.tobytes() == ds[i].tobytes(), (type(ds).__name__, i)
        with pytest.raises(IndexError):
            ds.__getitems__([0, n])
    t = RecordDataset(path, RECORD, transform=record_no)
    assert t.__getitems__([4, 2]) == [4, 2]
    # In a DataLoader (which calls __getitems__) with 0 workers: every record once, in order.
    dl = DataLoader(RecordDataset(path, RECORD), batch_size=64, collate_fn=as_list)
    assert [record_no(x) for b in dl for x in b] == list(range(NRECORDS))


def test_distributed_sampler_two_ranks_cover_once(records):
    path, data = records
    ds = RecordDataset(path, RECORD)
    seen = np.zeros(NRECORDS, dtype=np.int64)
    for rank in range(2):
        sampler = DistributedSampler(ds, num_replicas=2, rank=rank, shuffle=True, seed=3)
        dl = DataLoader(ds, batch_size=16, sampler=sampler, num_workers=2, collate_fn=as_list)
        for batch in dl:
            for item in batch:
                i = record_no(item)
                assert item.tobytes() == expected(data, i)
                seen[i] += 1
    assert (seen == 1).all()  # 3000 divides evenly: no padding


def collect(ds, workers, batch_size=1, method="fork"):
    dl = DataLoader(ds, batch_size=batch_size, num_workers=workers, collate_fn=as_list,
                    multiprocessing_context=method if workers else None)
    return [record_no(x) for b in dl for x in b]


def test_sharded_iterable_ranks_and_workers_cover_once(records):
    path, data = records
    got = []
    for rank in range(2):
        ds = ShardedIterable(path, RECORD, seed=7, rank=rank, world_size=2, batch_size=16)
        assert len(ds) == NRECORDS // 2
        order = collect(ds, workers=2, batch_size=16)
        # With the DataLoader's batch size, batches arrive in exactly the rank's order.
        assert order == ds.rank_order().tolist()
        got += order
    assert sorted(got) == list(range(NRECORDS))
    ds = ShardedIterable(path, RECORD, seed=7, batch_size=16)
    item = next(iter(ds))
    assert item.tobytes() == expected(data, record_no(item))


def test_sharded_iterable_shuffle_is_deterministic_and_local(records):
    path, _ = records
    a = ShardedIterable(path, RECORD, seed=1)
    b = ShardedIterable(path, RECORD, seed=1)
    assert (a.order() == b.order()).all()
    assert sorted(a.order().tolist()) == list(range(NRECORDS))
    assert (a.order() != np.arange(NRECORDS)).any()
    a.set_epoch(1)
    assert (a.order() != b.order()).any()
    c = ShardedIterable(path, RECORD, seed=2)
    assert (c.order() != b.order()).any()
    # Nearby records stay together: the order is the 47 blocks of 64 consecutive records
    # (the last one 3000 - 46 * 64 = 56 long) one after the other, each block complete.
    o = b.order().tolist()
    runs = []
    for r in o:
        if runs and runs[-1][0] == r // 64:
            runs[-1][1].append(r)
        else:
            runs.append((r // 64, [r]))
    assert sorted(blk for blk, _ in runs) == list(range(47))
    for blk, members in runs:
        assert sorted(members) == list(range(blk * 64, min(blk * 64 + 64, NRECORDS)))
    assert [blk for blk, _ in runs] != list(range(47))  # the blocks are permuted too
    plain = ShardedIterable(path, RECORD, shuffle=False)
    assert plain.order().tolist() == list(range(NRECORDS))
    padded = ShardedIterable(path, RECORD, world_size=7, rank=6, shuffle=False)
    assert len(padded) == -(-NRECORDS // 7) and len(padded.rank_order()) == len(padded)


@pytest.mark.filterwarnings("ignore:This DataLoader will create 3 worker processes")
def test_sharded_iterable_resumes_with_other_worker_count(records):
    path, _ = records
    full = ShardedIterable(path, RECORD, seed=5, rank=1, world_size=2, batch_size=8)
    full.set_epoch(3)
    want = full.rank_order().tolist()
    ds = ShardedIterable(path, RECORD, seed=5, rank=1, world_size=2, batch_size=8)
    ds.set_epoch(3)
    dl = DataLoader(ds, batch_size=8, num_workers=2, collate_fn=as_list)
    first = []
    for batch in dl:
        first += [record_no(x) for x in batch]
        if len(first) >= 400:
            break
    state = ds.state_dict(consumed=len(first))
    assert state == {"seed": 5, "epoch": 3, "consumed": 400}
    resumed = ShardedIterable(path, RECORD, seed=5, rank=1, world_size=2, batch_size=8)
    resumed.load_state_dict(state)
    rest = collect(resumed, workers=3, batch_size=8)
    assert first + rest == want
    # Without workers the dataset counts what it yielded itself.
    solo = ShardedIterable(path, RECORD, seed=5, rank=1, world_size=2)
    solo.load_state_dict(state)
    it = iter(solo)
    for _ in range(10):
        next(it)
    assert solo.state_dict()["consumed"] == 410
    with pytest.raises(ValueError, match="seed"):
        ShardedIterable(path, RECORD, seed=6).load_state_dict(state)


def test_sharded_iterable_over_index(records):
    path, data = records
    index = [(i * RECORD, RECORD) for i in range(0, NRECORDS, 3)]
    ds = ShardedIterable(path, index=index, seed=0, block_records=4)
    items = list(ds)
    assert len(items) == len(index)
    assert sorted(record_no(x) for x in items) == list(range(0, NRECORDS, 3))


# ---------------------------------------------------------------- FileDataset


def train_files(files):
    return {p: b for p, b in files.items() if p.startswith("train/") and p.endswith(".bin")}


def test_file_dataset_items_are_the_files(many_files, tree):
    path, files = many_files
    ds = FileDataset(path)
    assert len(ds) == len(files) and ds.paths == sorted(files)
    for i, p in enumerate(ds.paths):
        item = ds[i]
        assert isinstance(item, np.ndarray) and item.dtype == np.uint8 and item.flags.writeable
        assert item.tobytes() == files[p], p
    assert ds[-1].tobytes() == files[ds.paths[-1]]
    with pytest.raises(IndexError):
        ds[len(files)]
    assert ds.sizes.tolist() == [len(files[p]) for p in ds.paths]

    tr = FileDataset(hexz.open(path), prefix="train/", suffix=".bin")
    assert tr.paths == sorted(train_files(files)) and len(tr) == NFILES
    assert FileDataset(path, prefix="train/cls3/").paths == sorted(
        p for p in files if p.startswith("train/cls3/"))
    assert FileDataset(path, prefix="/train/cls3/img000").paths == [
        f"train/cls3/img{k:04d}.bin" for k in (3, 8)]
    assert FileDataset(path, prefix="tra").paths == sorted(p for p in files if p.startswith("train/"))
    assert FileDataset(path, suffix=".txt").paths == [f"train/cls{c}/notes.txt" for c in range(5)]
    assert len(FileDataset(path, prefix="nope/")) == 0
    t = FileDataset(path, suffix=".txt", transform=lambda a: bytes(a).decode())
    assert t[2] == "class 2\n"

    # Regular files only (hard links too), empty files included.
    tp, src = tree
    td = FileDataset(tp)
    assert "empty.txt" in td.paths and "sub/big-link.bin" in td.paths
    assert "link-to-big" not in td.paths and "sub" not in td.paths and len(td) == 12
    for i, p in enumerate(td.paths):
        assert td[i].tobytes() == (src / p).read_bytes(), p


def test_file_dataset_needs_a_tree(records):
    with pytest.raises(hexz.NoFileTree, match="FileDataset"):
        FileDataset(records[0], suffix=".jpg")


def file_no(item) -> int:
    arr = item.numpy() if hasattr(item, "numpy") else np.asarray(item)
    return int(arr[:8].view(np.uint64)[0])


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_file_dataset_dataloader_two_workers_every_file_once(many_files, method):
    path, files = many_files
    ds = FileDataset(path, prefix="train/", suffix=".bin")
    ds[0]  # the parent reads first
    dl = DataLoader(ds, batch_size=16, num_workers=2, multiprocessing_context=method,
                    collate_fn=as_list, shuffle=True,
                    generator=torch.Generator().manual_seed(2))
    seen = np.zeros(NFILES, dtype=np.int64)
    for batch in dl:
        for item in batch:
            k = file_no(item)
            assert item.tobytes() == files[f"train/cls{k % 5}/img{k:04d}.bin"]
            seen[k] += 1
    assert (seen == 1).all(), np.flatnonzero(seen != 1)[:10]


def test_file_dataset_distributed_sampler_partitions(many_files):
    path, files = many_files
    ds = FileDataset(path, prefix="train/", suffix=".bin")
    parts = []
    for rank in range(2):
        sampler = DistributedSampler(ds, num_replicas=2, rank=rank, shuffle=True, seed=5)
        dl = DataLoader(ds, batch_size=8, sampler=sampler, num_workers=2, collate_fn=as_list)
        got = []
        for batch in dl:
            for item in batch:
                k = file_no(item)
                assert item.tobytes() == files[f"train/cls{k % 5}/img{k:04d}.bin"]
                got.append(k)
        assert len(got) == NFILES // 2
        parts.append(set(got))
    assert not parts[0] & parts[1]
    assert parts[0] | parts[1] == set(range(NFILES))


def test_file_dataset_pickles(many_files):
    import pickle

    path, files = many_files
    ds = FileDataset(path, prefix="val/")
    blob = pickle.dumps(ds)
    assert str(path).encode() in blob
    copy = pickle.loads(blob)
    assert copy.paths == ds.paths and len(copy) == NFILES // 10
    assert [copy[i].tobytes() for i in range(len(copy))] == [files[p] for p in ds.paths]


def test_file_dataset_pickle_stays_small_for_many_files(many_files, tree, workdir):
    """The pickle (what a spawn worker receives) holds the archive's location and options,
    the filter and the count, never the list: the same size for 300 files as for 30, and
    no path in it. The copy makes the list again from the archive when first used."""
    import pickle
    import shutil

    path, files = many_files
    everything = FileDataset(path)
    few = FileDataset(path, prefix="val/")
    assert len(everything) > 10 * len(few)
    big, small = pickle.dumps(everything), pickle.dumps(few)
    assert len(big) < 1024 and len(big) <= len(small), (len(big), len(small))
    assert b"img0001" not in big
    copy = pickle.loads(big)
    assert len(copy) == len(everything)  # without making the list
    assert copy.paths == everything.paths
    assert copy[len(copy) - 1].tobytes() == files[everything.paths[-1]]
    # The archive changed under the pickle: the copy says so instead of reading wrong files.
    moved = workdir / "many-moved.hxz"
    shutil.copy(path, moved)
    stale = pickle.dumps(FileDataset(moved))
    shutil.copy(tree[0], moved)  # 12 files, not 305
    other = pickle.loads(stale)
    with pytest.raises(RuntimeError, match="files match"):
        other[0]


def _pipe_size(fd: int) -> int:
    import fcntl

    return fcntl.fcntl(fd, 1032)  # F_GETPIPE_SZ


def _pipe_limit() -> int:
    with open("/proc/sys/fs/pipe-max-size") as f:
        return min(hexz.torch.WORKER_PIPE_BYTES, int(f.read()))


@pytest.mark.parametrize("kind", ["index", "record", "files", "sharded"])
def test_workers_enlarge_the_pipe_their_batches_cross(records, many_files, kind, monkeypatch):
    """A worker's first read enlarges the pipe to the main process: without it a batch of a
    few MiB crosses in 64 KiB hand-offs, which caps the DataLoader (docs/BENCHMARKS.md)."""
    path, data = records
    if kind == "index":
        ds = IndexDataset(path, [(i * RECORD, RECORD) for i in range(64)])
    elif kind == "record":
        ds = RecordDataset(path, RECORD)
    elif kind == "files":
        ds = FileDataset(many_files[0])
    else:
        ds = ShardedIterable(path, record_size=RECORD, seed=1)
    batch = None if kind == "sharded" else 8
    dl = DataLoader(ds, batch_size=batch, num_workers=2, collate_fn=as_list)
    it = iter(dl)
    next(it)
    assert _pipe_size(it._worker_result_queue._reader.fileno()) == _pipe_limit()
    del it
    # HEXZ_WORKER_PIPE=0 leaves it as it is (64 KiB: the enlarging above is the datasets').
    monkeypatch.setenv("HEXZ_WORKER_PIPE", "0")
    it = iter(DataLoader(ds, batch_size=batch, num_workers=2, collate_fn=as_list))
    first = next(it)
    assert _pipe_size(it._worker_result_queue._reader.fileno()) == 64 << 10
    assert len(first) >= 1
    del it
