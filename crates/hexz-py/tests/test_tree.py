"""File-tree archives from Python: namelist, infolist, stat, read_file and open_file against
the directory `hexz pack DIR` packed (the `tree` fixture in conftest.py)."""

from __future__ import annotations

import hashlib
import io
import multiprocessing as mp
import os
import pickle
import stat as st
import tarfile
import threading

import numpy as np
import pytest

import hexz


def source_entries(src):
    """{relative path: absolute path} of everything below src, as os.walk sees it."""
    out = {}
    for root, dirs, files in os.walk(src):
        for n in dirs + files:
            p = os.path.join(root, n)
            out[os.path.relpath(p, src)] = p
    return out


def regular_files(src):
    return {r: p for r, p in source_entries(src).items()
            if st.S_ISREG(os.lstat(p).st_mode)}


def test_namelist_equals_the_walked_source_tree(tree):
    path, src = tree
    a = hexz.open(path)
    want = sorted(r + "/" if os.path.isdir(p) and not os.path.islink(p) else r
                  for r, p in source_entries(src).items())
    names = a.namelist()
    assert names == want
    assert "empty-dir/" in names and "link-to-big" in names and "sub/deeper/notes.md" in names
    assert [i.path for i in a.infolist()] == [n.rstrip("/") for n in names]


def test_stat_fields_equal_lstat(tree):
    path, src = tree
    a = hexz.open(path)
    checked = 0
    for rel, p in source_entries(src).items():
        s = a.stat(rel)
        ls = os.lstat(p)
        assert s.path == rel
        assert s.mode == ls.st_mode == s.st_mode, rel
        assert (s.uid, s.gid) == (ls.st_uid, ls.st_gid), rel
        assert s.mtime_ns == ls.st_mtime_ns == s.st_mtime_ns, rel
        assert s.mtime == pytest.approx(ls.st_mtime, abs=1e-6)
        if st.S_ISDIR(ls.st_mode):
            assert s.type == "dir" and s.is_dir() and s.size == 0
        else:
            assert s.size == ls.st_size == s.st_size, rel
        if st.S_ISLNK(ls.st_mode):
            assert s.type == "symlink" and s.is_symlink() and not s.is_file()
            assert s.link_target == os.readlink(p)
        else:
            assert s.link_target is None
        if st.S_ISREG(ls.st_mode):
            assert s.type == "file" and s.is_file()
        checked += 1
    assert checked == len(a.namelist()) == 18
    # The entry that comes first in the table ("big-link.bin": '-' < '.') holds the inode;
    # the other names it.
    assert a.stat("sub/big.bin").hardlink_to == "sub/big-link.bin"
    assert a.stat("sub/big-link.bin").hardlink_to is None
    assert a.stat("sub/big.bin").link_target is None
    assert a.stat("secret").mode == st.S_IFREG | 0o600
    if os.geteuid() == 0:
        assert (a.stat("secret").uid, a.stat("secret").gid) == (1234, 5678)
    try:
        want_x = {n: os.getxattr(src / "hello.txt", n) for n in os.listxattr(src / "hello.txt")}
    except OSError:
        want_x = {}
    assert a.stat("hello.txt").xattrs == want_x
    # Path spellings the table normalises; the root itself.
    assert a.stat("/sub/./deeper/").path == "sub/deeper"
    assert a.stat(b"hello.txt").size == 12
    assert a.stat(src.relative_to(src) / "imgs").type == "dir"
    assert a.stat("").type == "dir"
    assert "hello.txt" in repr(a.stat("hello.txt"))


def test_read_file_every_file_and_ranges(tree):
    path, src = tree
    a = hexz.open(path)
    files = regular_files(src)
    assert len(files) == 12
    for rel, p in files.items():
        with open(p, "rb") as f:
            want = f.read()
        got = a.read_file(rel)
        assert isinstance(got, bytes) and got == want, rel
    big = (src / "sub" / "big.bin").read_bytes()
    assert len(big) > 10 * 65536
    assert a.read_file("sub/big.bin", offset=65_000, length=200_000) == big[65_000:265_000]
    assert a.read_file("sub/big.bin", offset=len(big) - 5) == big[-5:]
    assert a.read_file("sub/big.bin", offset=len(big) + 10) == b""
    assert a.read_file("sub/big.bin", length=0) == b""
    assert a.read_file("empty.txt") == b""
    assert a.read_file("sub/big-link.bin") == big


def test_open_file_seek_read_readinto(tree):
    path, src = tree
    a = hexz.open(path)
    big = (src / "sub" / "big.bin").read_bytes()
    f = a.open_file("sub/big.bin")
    assert isinstance(f, io.BufferedReader) and isinstance(f.raw, hexz.ArchiveFile)
    assert f.readable() and f.seekable() and not f.writable()
    assert f.read(10) == big[:10] and f.tell() == 10
    rng = np.random.default_rng(3)
    for _ in range(50):
        off = int(rng.integers(0, len(big) + 100))
        n = int(rng.integers(0, 150_000))
        f.seek(off)
        assert f.read(n) == big[off : off + n]
    assert f.seek(-100, io.SEEK_END) == len(big) - 100
    assert f.read() == big[-100:] and f.read(5) == b""
    f.seek(1000)
    f.seek(500, io.SEEK_CUR)
    assert f.read(7) == big[1500:1507]

    raw = a.open_file("sub/big.bin", buffering=0)
    assert isinstance(raw, hexz.ArchiveFile) and len(raw) == len(big) and raw.name == "sub/big.bin"
    arr = np.zeros(100_000, dtype=np.uint8)
    raw.seek(123_456)
    assert raw.readinto(arr) == 100_000 and arr.tobytes() == big[123_456:223_456]
    wide = np.zeros(1000, dtype=np.uint32)  # a non-byte buffer: filled as bytes
    raw.seek(0)
    assert raw.readinto(wide) == 4000 and wide.tobytes() == big[:4000]
    raw.seek(len(big) - 3)
    buf = bytearray(10)
    assert raw.readinto(buf) == 3 and bytes(buf[:3]) == big[-3:]
    assert raw.readinto(buf) == 0
    assert raw.readall() == b""
    raw.seek(0)
    assert raw.readall() == big
    with pytest.raises(ValueError):
        raw.seek(-1)
    raw.close()
    with pytest.raises(ValueError):
        raw.read(1)
    assert a.read_file("hello.txt") == b"hello world\n"  # the archive stays open

    with a.open_file("empty.txt") as e:
        assert e.read() == b"" and e.readinto(bytearray(4)) == 0
    with a.open_file("sub/deeper/notes.md") as t:
        lines = t.readlines()
    assert lines == [b"# notes\n"] * 1000


def test_pil_numpy_and_tarfile_read_from_open_file(tree):
    from PIL import Image

    path, src = tree
    a = hexz.open(path)
    for name in ("pic.png", "pic.jpg"):
        with Image.open(a.open_file(f"imgs/{name}")) as got, Image.open(src / "imgs" / name) as want:
            assert got.format == want.format and got.size == (64, 48)
            assert np.array_equal(np.asarray(got), np.asarray(want)), name
    with Image.open(a.open_file("imgs/pic.png")) as png:  # lossless: the original pixels
        px = np.asarray(png)
    assert px[10, 20].tolist() == [80, 50, 60]
    arr = np.load(a.open_file("imgs/arr.npy"))
    assert arr.shape == (100, 100) and np.array_equal(arr.ravel(), np.arange(10_000, dtype=np.float32))
    with tarfile.open(fileobj=a.open_file("bundle.tar"), mode="r:") as t:
        assert t.getnames() == ["hello.txt", "notes.md"]
        assert t.extractfile("notes.md").read() == b"# notes\n" * 1000


def test_missing_paths_and_entries_that_are_not_files(tree):
    path, _ = tree
    a = hexz.open(path)
    for call in (a.stat, a.read_file, a.open_file):
        with pytest.raises(hexz.PathNotFound, match="no-such") as e:
            call("sub/no-such")
        assert isinstance(e.value, FileNotFoundError) and isinstance(e.value, hexz.HexzError)
        assert e.value.errno == 2
        assert str(e.value) == f"no such file or directory in {path}: 'sub/no-such'"
    with pytest.raises(FileNotFoundError):
        a.stat("hello.txt/child")
    with pytest.raises(hexz.IsADirectory, match="is a dir") as e:
        a.read_file("sub")
    assert isinstance(e.value, IsADirectoryError) and e.value.errno == 21
    with pytest.raises(IsADirectoryError):
        a.open_file("empty-dir/")
    with pytest.raises(hexz.NotARegularFile, match="is a symlink"):
        a.read_file("link-to-big")  # symlinks are not followed
    with pytest.raises(hexz.InvalidArgument, match=r"\.\."):
        a.stat("sub/../hello.txt")


def test_streams_only_archive_says_so(plain):
    a = hexz.open(plain[0])
    calls = (a.namelist, a.infolist, lambda: a.stat("x"), lambda: a.read_file("x"),
             lambda: a.open_file("x"))
    for call in calls:
        with pytest.raises(hexz.NoFileTree, match="byte streams only, not a file tree") as e:
            call()
        assert isinstance(e.value, LookupError)
    assert a.read(0, 4) == plain[1][:4]  # the streams still read


def test_tree_archive_streams_hold_the_file_data(tree):
    path, src = tree
    a = hexz.open(path)
    s = a.stat("hello.txt")
    assert a.read(s.data_offset, s.size) == b"hello world\n"


def _child_reads_tree(a, f, want, q):
    try:
        got = {n: hashlib.sha256(a.read_file(n)).hexdigest() for n in want}
        f.seek(0)
        q.put((got == want, hashlib.sha256(f.read()).hexdigest()))
    except BaseException as e:  # pragma: no cover - reported to the parent
        q.put(repr(e))


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_tree_reads_in_child_processes_and_pickles(tree, method):
    path, src = tree
    a = hexz.open(path)
    want = {r: hashlib.sha256(open(p, "rb").read()).hexdigest()
            for r, p in regular_files(src).items()}
    assert a.read_file("sub/big.bin")  # the parent opens its reader and file table first
    f = a.open_file("sub/big.bin", buffering=0)
    f.seek(777)
    g = pickle.loads(pickle.dumps(f))
    assert g.tell() == 777 and g.read(10) == a.read_file("sub/big.bin", offset=777, length=10)
    b = pickle.loads(pickle.dumps(a))
    assert b.namelist() == a.namelist()
    ctx = mp.get_context(method)
    q = ctx.Queue()
    p = ctx.Process(target=_child_reads_tree, args=(a, f, want, q))
    p.start()
    p.join(120)
    if p.is_alive():
        p.kill()
        pytest.fail(f"child process ({method}) did not finish")
    assert p.exitcode == 0
    assert q.get(timeout=5) == (True, want["sub/big.bin"])


def test_threads_read_files_at_once(tree):
    path, src = tree
    a = hexz.open(path, cache_size=0)
    files = regular_files(src)
    want = {r: open(p, "rb").read() for r, p in files.items()}
    bad = []

    def work(k):
        for i in range(20):
            for r in sorted(want)[k % 3 :: 3]:
                if a.read_file(r) != want[r]:
                    bad.append(r)

    ts = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not bad
