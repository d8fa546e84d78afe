"""The hexz Python API against archives made by the real CLI: bytes, buffers, file
objects, threads, errors, info, pack, pickling and fork."""

from __future__ import annotations

import hashlib
import io
import json
import multiprocessing as mp
import os
import pickle
import shutil
import tarfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

import hexz
from conftest import PASSWORD, make_data


def check_ranges(a: hexz.Archive, data: bytes, stream: str = "disk", seed: int = 0) -> None:
    assert a.size(stream) == len(data)
    assert a.read(0, len(data), stream) == data
    rng = np.random.default_rng(seed)
    for _ in range(50):
        off = int(rng.integers(0, len(data)))
        ln = int(rng.integers(0, 300_000))
        assert a.read(off, ln, stream) == data[off : off + ln], (off, ln)
    # Past the end: short, then empty.
    assert a.read(len(data) - 10, 100, stream) == data[-10:]
    assert a.read(len(data), 100, stream) == b""
    assert a.read(len(data) + 5, 100, stream) == b""


# ---------------------------------------------------------------- archive kinds


@pytest.fixture(scope="session")
def kinds(cli, workdir, plain):
    """name -> (archive, open kwargs, disk bytes) for every archive kind."""
    _, disk, _ = plain
    src = workdir / "plain.disk"
    out = {"lz4+memory": (plain[0], {}, disk)}
    out["zstd"] = (cli.pack(workdir / "zstd.hxz", disk=src, extra=["--compression", "zstd", "--level", "5"]), {}, disk)
    out["none"] = (cli.pack(workdir / "none.hxz", disk=src, extra=["--compression", "none"]), {}, disk)
    out["cdc"] = (cli.pack(workdir / "cdc.hxz", disk=src, extra=["--cdc"]), {}, disk)
    out["block16k"] = (cli.pack(workdir / "b16.hxz", disk=src, extra=["--block-size", "16K"]), {}, disk)
    # Thin: the child changes a few ranges of the parent's data.
    child = bytearray(disk)
    child[100_000:110_000] = b"\xab" * 10_000
    child[2_000_000:2_000_100] = b"thin!" * 20
    child = bytes(child) + make_data(70_000, 9)
    (workdir / "child.disk").write_bytes(child)
    out["thin"] = (cli.pack(workdir / "thin.hxz", disk=workdir / "child.disk", extra=["--base", plain[0]]), {}, child)
    enc = cli.pack(workdir / "enc.hxz", disk=src, extra=["--encrypt"], password=PASSWORD)
    out["encrypted"] = (enc, {"password": PASSWORD}, disk)
    out["encrypted-bytes-password"] = (enc, {"password": PASSWORD.encode()}, disk)
    cli.run("keygen", "-o", workdir / "key")
    signed = cli.pack(workdir / "signed.hxz", disk=src)
    cli.run("sign", signed, "--key", workdir / "key")
    out["signed"] = (signed, {"pubkey": workdir / "key.pub"}, disk)
    out["signed-pathlike-str"] = (signed, {"pubkey": str(workdir / "key.pub")}, disk)
    return out


KINDS = ["lz4+memory", "zstd", "none", "cdc", "block16k", "thin", "encrypted",
         "encrypted-bytes-password", "signed", "signed-pathlike-str"]


@pytest.mark.parametrize("kind", KINDS)
def test_round_trip_every_kind(kinds, kind):
    path, kw, data = kinds[kind]
    with hexz.open(path, **kw) as a:
        check_ranges(a, data, seed=len(kind))
        assert hashlib.sha256(a.stream().read()).digest() == hashlib.sha256(data).digest()
        a.verify()


def test_memory_stream_and_streams(plain):
    path, disk, mem = plain
    a = hexz.open(Path(path))  # os.PathLike works too
    assert a.streams == ["disk", "memory"]
    check_ranges(a, mem, "memory", seed=3)
    assert a.size() == len(disk)


def test_info_matches_cli_json(cli, kinds):
    for kind in ["lz4+memory", "thin", "encrypted", "signed", "cdc"]:
        path, kw, _ = kinds[kind]
        want = json.loads(cli.run("info", "--json", path, password=PASSWORD).stdout)
        got = hexz.open(str(path), **kw).info()
        assert got == want, kind


def test_verify_report_counts(plain):
    r = hexz.open(plain[0]).verify()
    assert r["archives"] == 1
    assert r["bytes"] == len(plain[1]) + len(plain[2])
    assert r["blocks"] == (len(plain[1]) + 65535) // 65536 + (len(plain[2]) + 65535) // 65536


# ---------------------------------------------------------------- buffers and file objects


def test_readinto_numpy_bytearray_memoryview(plain):
    path, disk, _ = plain
    a = hexz.open(path)
    arr = np.zeros(200_000, dtype=np.uint8)
    assert a.readinto(arr, 123_456) == 200_000
    assert arr.tobytes() == disk[123_456 : 123_456 + 200_000]
    # A typed array is filled byte for byte.
    f32 = np.zeros(1000, dtype=np.float32)
    assert a.readinto(f32, 4) == 4000
    assert f32.tobytes() == disk[4:4004]
    np.testing.assert_array_equal(f32, np.frombuffer(disk[4:4004], dtype=np.float32))
    # A slice of a bigger buffer: only that window changes.
    big = bytearray(b"\xee" * 1000)
    assert a.readinto(memoryview(big)[100:300], 5) == 200
    assert big[:100] == b"\xee" * 100 and big[300:] == b"\xee" * 700
    assert bytes(big[100:300]) == disk[5:205]
    # Past the end: a short count, the rest untouched.
    tail = bytearray(b"\x01" * 64)
    assert a.readinto(tail, len(disk) - 16) == 16
    assert bytes(tail[:16]) == disk[-16:] and tail[16:] == b"\x01" * 48
    assert a.readinto(bytearray(8), len(disk)) == 0


def test_readinto_refuses_readonly_and_strided(plain):
    a = hexz.open(plain[0])
    with pytest.raises((BufferError, TypeError)):
        a.readinto(b"immutable", 0)
    with pytest.raises((BufferError, TypeError, ValueError)):
        a.readinto(np.zeros((10, 10), dtype=np.uint8)[:, 1], 0)


def test_frombuffer_of_read(plain):
    a = hexz.open(plain[0])
    b = a.read(1024, 4096)
    assert isinstance(b, bytes)
    np.testing.assert_array_equal(np.frombuffer(b, dtype=np.uint8),
                                  np.frombuffer(plain[1][1024:5120], dtype=np.uint8))


def test_stream_is_a_seekable_raw_file(plain):
    path, disk, _ = plain
    s = hexz.open(path).stream("disk")
    assert isinstance(s, io.RawIOBase) and s.seekable() and s.readable() and not s.writable()
    assert s.read(10) == disk[:10]
    assert s.tell() == 10
    s.seek(-100, io.SEEK_END)
    assert s.read() == disk[-100:]
    s.seek(1000)
    buf = bytearray(50)
    assert s.readinto(buf) == 50 and bytes(buf) == disk[1000:1050]
    s.seek(5, io.SEEK_CUR)
    assert s.read(5) == disk[1055:1060]
    out = io.BytesIO()
    s.seek(0)
    shutil.copyfileobj(io.BufferedReader(s), out)
    assert out.getvalue() == disk
    with pytest.raises(ValueError):
        s.seek(-1)


def test_tarfile_reads_from_stream(cli, workdir):
    rng = np.random.default_rng(5)
    files = {f"dir/f{i}.bin": rng.integers(0, 256, int(rng.integers(0, 300_000)), dtype=np.uint8).tobytes()
             for i in range(12)}
    tar_path = workdir / "t.tar"
    with tarfile.open(tar_path, "w") as t:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    archive = cli.pack(workdir / "tar.hxz", disk=tar_path)
    with hexz.open(archive) as a, tarfile.open(fileobj=a.stream(), mode="r:") as t:
        names = t.getnames()
        assert sorted(names) == sorted(files)
        for name, data in files.items():
            assert t.extractfile(name).read() == data


# ---------------------------------------------------------------- threads


def test_eight_threads_read_at_once(plain):
    path, disk, _ = plain
    a = hexz.open(path, cache_size=1 << 20)  # small cache: threads decode for real
    rng = np.random.default_rng(8)
    jobs = [(int(rng.integers(0, len(disk))), int(rng.integers(1, 400_000))) for _ in range(400)]

    def work(job):
        off, ln = job
        if off % 2:
            return a.read(off, ln) == disk[off : off + ln]
        buf = np.empty(ln, dtype=np.uint8)
        n = a.readinto(buf, off)
        return buf[:n].tobytes() == disk[off : off + ln]

    with ThreadPoolExecutor(8) as ex:
        results = list(ex.map(work, jobs))
    assert results.count(True) == len(jobs)


def test_threads_race_to_open_an_unpickled_archive(kinds):
    """An unpickled Archive opens on first use: 8 threads using it at once all get the same
    correct bytes (one reader wins, the others' are dropped)."""
    import threading

    path, kw, data = kinds["encrypted"]
    for _ in range(5):
        b = pickle.loads(pickle.dumps(hexz.open(path, **kw)))
        go = threading.Barrier(8)
        out = [None] * 8

        def work(i):
            go.wait()
            off = i * 300_000
            out[i] = b.read(off, 200_000) == data[off : off + 200_000]

        ts = [threading.Thread(target=work, args=(i,)) for i in range(8)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        assert out == [True] * 8


# ---------------------------------------------------------------- errors


def test_wrong_and_missing_password(cli, kinds):
    enc = kinds["encrypted"][0]
    with pytest.raises(hexz.WrongPassword) as e:
        hexz.open(enc, password="not it")
    assert str(e.value) == cli.error("info", enc, password="not it")
    with pytest.raises(hexz.PasswordRequired) as e:
        hexz.open(enc)
    assert isinstance(e.value, hexz.WrongPassword) and isinstance(e.value, hexz.HexzError)
    assert str(enc) in str(e.value)


def test_missing_archive(cli, workdir):
    missing = workdir / "nope" / "missing.hxz"
    with pytest.raises(hexz.ArchiveNotFound) as e:
        hexz.open(missing)
    assert isinstance(e.value, FileNotFoundError)
    assert str(e.value) == cli.error("info", missing)


def test_missing_parent(cli, workdir, plain):
    base = workdir / "gone-base.hxz"
    shutil.copy(plain[0], base)
    child = cli.pack(workdir / "orphan.hxz", disk=workdir / "child.disk", extra=["--base", base])
    base.unlink()
    with pytest.raises(hexz.ArchiveNotFound) as e:
        hexz.open(child)
    assert "gone-base.hxz" in str(e.value) and "parent" in str(e.value)
    assert str(e.value) == cli.error("info", child)


def test_corrupt_archive(cli, workdir, plain):
    bad = workdir / "corrupt.hxz"
    raw = bytearray(plain[0].read_bytes())
    raw[600] ^= 0xFF  # inside the first block of the disk stream
    bad.write_bytes(bytes(raw))
    a = hexz.open(bad, cache_size=0)
    with pytest.raises(hexz.CorruptArchive) as e:
        a.read(0, 4096)
    assert "block 0 of disk stream" in str(e.value)
    with pytest.raises(hexz.CorruptArchive) as e:
        a.readinto(np.empty(4096, np.uint8), 0)
    with pytest.raises(hexz.CorruptArchive) as e:
        a.verify()
    assert "block 0 of disk stream" in str(e.value)
    # Damage the header: refused at open.
    raw = bytearray(plain[0].read_bytes())
    raw[40] ^= 0x55
    bad.write_bytes(bytes(raw))
    with pytest.raises((hexz.CorruptArchive, hexz.UnsupportedArchive)) as e:
        hexz.open(bad)
    assert str(e.value) == cli.error("info", bad)


def test_not_an_archive_and_bad_arguments(workdir, plain, kinds):
    junk = workdir / "junk.bin"
    junk.write_bytes(b"hello, world" * 100)
    with pytest.raises(hexz.UnsupportedArchive):
        hexz.open(junk)
    a = hexz.open(plain[0])
    with pytest.raises(ValueError, match="unknown stream 'swap'"):
        a.read(0, 1, "swap")
    disk_only = hexz.open(kinds["zstd"][0])
    with pytest.raises(hexz.NoSuchStream):
        disk_only.read(0, 1, "memory")
    with pytest.raises(LookupError):
        disk_only.size("memory")


def test_signature_checked(cli, workdir, kinds):
    cli.run("keygen", "-o", workdir / "other")
    signed = kinds["signed"][0]
    with pytest.raises(hexz.SignatureError) as e:
        hexz.open(signed, pubkey=workdir / "other.pub")
    assert str(e.value) == cli.error("info", "--pubkey", workdir / "other.pub", signed)
    unsigned = kinds["zstd"][0]
    with pytest.raises(hexz.SignatureError):
        hexz.open(unsigned, pubkey=workdir / "key.pub")
    with pytest.raises(ValueError):
        hexz.open(signed, pubkey=b"short")


def test_io_and_remote_errors(cli, workdir):
    # A directory is no archive file: the read fails with EISDIR, an OSError.
    with pytest.raises(hexz.ArchiveIOError) as e:
        hexz.open(workdir)
    assert isinstance(e.value, OSError) and e.value.transient is False
    assert str(e.value) == cli.error("info", workdir)
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}/x.hxz"
    with pytest.raises(hexz.RemoteError, match="restricted address 127.0.0.1") as e:
        hexz.open(url)
    assert e.value.transient is False
    with pytest.raises(hexz.RemoteError, match="Connection refused") as e:
        hexz.open(url, allow_restricted=True)
    assert e.value.transient is True and isinstance(e.value, OSError)


def test_closed_archive(plain):
    with hexz.open(plain[0]) as a:
        assert a.read(0, 4) == plain[1][:4]
    assert a.closed
    with pytest.raises(ValueError, match="closed"):
        a.read(0, 4)


# ---------------------------------------------------------------- pack


def test_pack_from_path_bytes_and_file_object(workdir):
    data = make_data(1 << 20, 11)
    mem = make_data(300_000, 12)
    src = workdir / "pack-src.bin"
    src.write_bytes(data)
    seen = []
    stats = hexz.pack(workdir / "p1.hxz", disk=src, memory=mem, compression="zstd", level=3,
                      block_size=32768, progress=lambda d, t: seen.append((d, t)))
    assert stats["logical_bytes"] == len(data) + len(mem)
    assert stats["disk"]["blocks"] == 32 and stats["memory"]["input_bytes"] == len(mem)
    assert seen and seen[-1] == (len(data) + len(mem), len(data) + len(mem))
    assert all(d1 <= d2 for (d1, _), (d2, _) in zip(seen, seen[1:]))
    with hexz.open(workdir / "p1.hxz") as a:
        assert a.read(0, len(data)) == data and a.read(0, len(mem), "memory") == mem
        assert a.info()["compression"] == "zstd" and a.info()["block_size"] == 32768

    with open(src, "rb") as f:
        hexz.pack(workdir / "p2.hxz", disk=f, cdc=True)
    with hexz.open(workdir / "p2.hxz") as a:
        assert a.read(0, len(data)) == data and a.info()["chunking"] == "cdc"

    hexz.pack(workdir / "p3.hxz", disk=bytearray(data), encrypt=True, password="pw")
    with pytest.raises(hexz.PasswordRequired):
        hexz.open(workdir / "p3.hxz")
    assert hexz.open(workdir / "p3.hxz", password="pw").read(0, len(data)) == data

    # Thin: blocks are matched by content, so the child uses the parent's block size. Of its
    # 32 blocks of 32 KiB, block 15 changed and blocks 11 and 12 are zeros (holes, not
    # references); the other 29 refer to the parent.
    child = data[:500_000] + b"\x01" * 1000 + data[501_000:]
    st = hexz.pack(workdir / "p4.hxz", disk=child, base=workdir / "p1.hxz", block_size=32768)
    assert st["disk"]["blocks"] == 32 and st["disk"]["zero_blocks"] == 2
    assert st["disk"]["parent_blocks"] == 29
    assert hexz.open(workdir / "p4.hxz").read(0, len(child)) == child


def test_pack_errors_leave_nothing(workdir):
    out = workdir / "never.hxz"
    with pytest.raises(hexz.InvalidArgument, match="block size"):
        hexz.pack(out, disk=b"x" * 10, block_size=100)
    with pytest.raises(hexz.InvalidArgument, match="zstd only"):
        hexz.pack(out, disk=b"x", level=3)
    with pytest.raises(hexz.InvalidArgument):
        hexz.pack(out)
    with pytest.raises(hexz.ArchiveNotFound):
        hexz.pack(out, disk=workdir / "no-such-input")

    def boom(done, total):
        raise RuntimeError("stop")

    with pytest.raises(RuntimeError, match="stop"):
        hexz.pack(out, disk=b"y" * 100_000, progress=boom)
    assert not out.exists()
    assert not [p for p in workdir.iterdir() if p.name.startswith("never")]


# ---------------------------------------------------------------- pickling and processes


def test_pickle_reopens(kinds):
    path, kw, data = kinds["encrypted"]
    a = hexz.open(path, **kw, cache_size=1 << 20)
    b = pickle.loads(pickle.dumps(a))
    assert isinstance(b, hexz.Archive) and b.location == str(path)
    assert b.read(5000, 70_000) == data[5000:75_000]


def _threads(prefix: str) -> int:
    n = 0
    for t in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{t}/comm") as f:
                n += f.read().startswith(prefix)
        except OSError:
            pass
    return n


def _child_reads(a, want_sha, q):
    try:
        got = a.read(0, a.size())  # a multi-block read
        # A new thread takes its name once it runs: count when the counts have held still
        # for 0.2 s (at most 5 s), not while the pools' threads are still starting.
        counts, since, deadline = None, time.monotonic(), time.monotonic() + 5
        while time.monotonic() < deadline:
            now = (_threads("hexz-decode"), _threads("hexz-io"))
            if now != counts:
                counts, since = now, time.monotonic()
            elif time.monotonic() - since >= 0.2:
                break
            time.sleep(0.01)
        q.put((hashlib.sha256(got).hexdigest() == want_sha, *counts))
    except BaseException as e:  # pragma: no cover - reported to the parent
        q.put(repr(e))


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_archive_used_in_child_process(plain, method):
    """Regression: a multi-block read in a forked child after one in the parent hung (the
    parent's thread pool does not exist in the child)."""
    path, disk, _ = plain
    a = hexz.open(path)
    assert a.read(0, len(disk)) == disk  # parent starts its pools first
    ctx = mp.get_context(method)
    q = ctx.Queue()
    p = ctx.Process(target=_child_reads, args=(a, hashlib.sha256(disk).hexdigest(), q))
    p.start()
    p.join(120)
    if p.is_alive():
        p.kill()
        pytest.fail(f"child process ({method}) did not finish its read")
    assert p.exitcode == 0
    # Right bytes, and a lean worker: one decode thread and two IO threads, not one per core.
    assert q.get(timeout=5) == (True, 1, 2)


def test_installed_package():
    """The suite exercises the wheel pip installed into the virtualenv, not the source tree."""
    import sys
    import sysconfig

    site = Path(sysconfig.get_paths()["purelib"]).resolve()
    assert Path(hexz.__file__).resolve().parent == site / "hexz"
    assert Path(hexz._hexz.__file__).resolve() == site / "hexz" / "_hexz.abi3.so"
    assert (site / "hexz" / "py.typed").exists() and (site / "hexz" / "_hexz.pyi").exists()
    assert Path(sys.prefix) != Path(sys.base_prefix)  # a virtualenv
    from importlib.metadata import version

    assert hexz.__version__ == version("hexz")  # the wheel's metadata matches the module


def test_import_without_torch():
    import subprocess
    import sys

    code = "import sys; sys.modules['torch'] = None; import hexz; print(hexz.open.__name__)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "open"


# ---------------------------------------------------------------- remote (loopback nginx)


def test_remote_reads_over_http(nginx, kinds):
    www, url = nginx
    for name, kind in (("plain.hxz", "lz4+memory"), ("enc.hxz", "encrypted")):
        path, kw, data = kinds[kind]
        shutil.copy(path, www / name)
        (www / name).chmod(0o644)
        with pytest.raises(hexz.HexzError, match="127.0.0.1"):
            hexz.open(f"{url}/{name}", **kw)  # loopback is refused unless allowed
        with hexz.open(f"{url}/{name}", allow_restricted=True, **kw) as a:
            check_ranges(a, data, seed=11)
            b = pickle.loads(pickle.dumps(a))
            assert b.read(1000, 200_000) == data[1000:201_000]
    with pytest.raises(hexz.ArchiveNotFound):
        hexz.open(f"{url}/missing.hxz", allow_restricted=True)


# ---------------------------------------------------------------- Reader (read-ahead)


def test_reader_reads_equal_the_source_in_any_order(plain):
    path, disk, mem = plain
    with hexz.open(path) as a:
        r = a.reader()
        assert isinstance(r, hexz.Reader) and r.stream == "disk" and r.size() == len(disk)
        # In order (read ahead), with small gaps, then at random: always the source bytes.
        pos, rng = 0, np.random.default_rng(11)
        while pos < len(disk):
            n = int(rng.integers(1, 150_000))
            buf = np.empty(n, dtype=np.uint8)
            got = r.readinto(buf, pos)
            assert buf[:got].tobytes() == disk[pos : pos + n]
            pos += got + int(rng.integers(0, 3)) * 1000
        for _ in range(100):
            off, n = int(rng.integers(0, len(disk))), int(rng.integers(0, 200_000))
            assert r.read(off, n) == disk[off : off + n]
        assert r.read(len(disk) + 3, 10) == b""
        m = a.reader("memory")
        assert m.read(0, len(mem)) == mem
        # Several ranges into one buffer in one call (what datasets' __getitems__ use).
        ranges = np.array([[0, 100], [100, 5000], [900_000, 7], [5100, 0], [5, 10]], dtype="<i8")
        out = np.zeros(int(ranges[:, 1].sum()), dtype=np.uint8)
        assert r._readinto_ranges(out, ranges.tobytes()) == out.size
        assert out.tobytes() == b"".join(disk[o : o + n] for o, n in ranges.tolist())
        with pytest.raises(ValueError, match="negative"):
            r._readinto_ranges(out, np.array([[-1, 5]], dtype="<i8").tobytes())
        with pytest.raises(ValueError, match="buffer"):
            r._readinto_ranges(out[:10], ranges.tobytes())
        # Items by number from an (n, 2) int64 index, one array for the batch, in one call
        # (what IndexDataset.__getitems__ uses): repeats, negative numbers, empty items.
        index = np.array([[0, 100], [100, 5000], [900_000, 7], [5100, 0]], dtype=np.int64)
        pick = [1, 0, -2, 3, 1]
        items = r._read_items(index, pick)
        assert [x.tobytes() for x in items] == [disk[o : o + n] for o, n in index[pick].tolist()]
        assert all(x.dtype == np.uint8 and x.base is items[0].base for x in items)
        assert r._read_items(index, []) == []
        frozen = index.copy()
        frozen.setflags(write=False)  # a read-only index (np.load with mmap_mode="r")
        assert r._read_items(frozen, [2])[0].tobytes() == disk[900_000:900_007]
        with pytest.raises(IndexError, match="item 4 out of range"):
            r._read_items(index, [0, 4])
        with pytest.raises(IndexError, match="item -5 out of range"):
            r._read_items(index, [-5])
        with pytest.raises(ValueError, match="negative"):
            r._read_items(np.array([[-1, 5]], dtype=np.int64), [0])
        with pytest.raises(ValueError, match="pairs"):
            r._read_items(np.zeros(3, dtype=np.int64), [0])
        with pytest.raises(EOFError, match="read 3 of the 10 bytes"):
            r._read_items(np.array([[len(disk) - 3, 10]], dtype=np.int64), [0])
        # Batches of 128 KiB or more reuse the array of an earlier batch once all of its
        # items are gone, and never while one is alive.
        big = np.array([[o, 50_000] for o in range(0, 600_000, 50_000)], dtype=np.int64)
        want = [disk[o : o + n] for o, n in big.tolist()]
        first = r._read_items(big, list(range(12)))
        kept = first[3]
        second = r._read_items(big, list(range(11, -1, -1)))
        assert second[0].base is not first[0].base  # `first` is alive: a new array
        assert [x.tobytes() for x in second] == want[::-1]
        base_id = id(first[0].base)
        del first  # `kept` still holds the first array
        third = r._read_items(big, list(range(12)))
        assert id(third[0].base) != base_id
        assert kept.tobytes() == want[3] and [x.tobytes() for x in third] == want
        third_id = id(third[0].base)
        del kept, third  # both arrays are free now (the reader's pool keeps them)
        fourth = r._read_items(big, [5, 6, 7, 8, 9, 10, 11, 0, 1, 2, 3, 4])
        assert [x.tobytes() for x in fourth] == want[5:] + want[:5]
        assert id(fourth[0].base) in (base_id, third_id), "a free batch array is reused"
        assert [x.tobytes() for x in second] == want[::-1]  # never touched
        # The same pool, for the datasets that fill their batch with _readinto_ranges.
        arr = r._batch_array(300_000)
        assert arr.dtype == np.uint8 and arr.size >= 300_000
        held = arr[:10]
        other = r._batch_array(300_000)
        assert other is not arr  # a view of `arr` is alive
        ids = (id(arr), id(other))
        del arr, held, other  # both free now (the pool keeps them)
        assert id(r._batch_array(290_000)) in ids
        assert r._batch_array(100).size == 100  # small batches are not pooled
        with pytest.raises(ValueError, match="unknown stream"):
            a.reader("swap")
        copy = pickle.loads(pickle.dumps(r))
        assert copy.stream == "disk" and copy.read(1000, 5000) == disk[1000:6000]
    with pytest.raises(ValueError, match="closed"):
        r.read(0, 1)


def _reader_in_child(r, disk_len, q):
    q.put((r.size() == disk_len, hashlib.sha256(r.read(0, disk_len)).hexdigest()))


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_reader_works_in_child_processes(plain, method):
    path, disk, _ = plain
    a = hexz.open(path)
    r = a.reader()
    assert r.read(0, len(disk)) == disk  # the parent reads (and reads ahead) first
    ctx = mp.get_context(method)
    q = ctx.Queue()
    p = ctx.Process(target=_reader_in_child, args=(r, len(disk), q))
    p.start()
    ok, digest = q.get(timeout=60)
    p.join(60)
    assert p.exitcode == 0 and ok and digest == hashlib.sha256(disk).hexdigest()
