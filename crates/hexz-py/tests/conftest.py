"""Shared fixtures: the real `hexz` CLI makes the archives the bindings read.

The CLI comes from $HEXZ_BIN, or is built with cargo (release) from this checkout. Archives
and their source data live in a temporary directory on a real disk ($HEXZ_TEST_TMP, default
/var/tmp), removed at the end of the session.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[3]
PASSWORD = "correct horse battery staple"


def _hexz_bin() -> str:
    env = os.environ.get("HEXZ_BIN")
    if env:
        return env
    subprocess.run(
        ["cargo", "build", "--release", "-q", "-p", "hexz-cli"], cwd=REPO, check=True
    )
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    return str(target / "release" / "hexz")


@pytest.fixture(scope="session")
def hexz_bin() -> str:
    return _hexz_bin()


class Cli:
    """Runs the real hexz CLI."""

    def __init__(self, binary: str, root: Path) -> None:
        self.binary = binary
        self.root = root

    def run(self, *args: str, password: str | None = None, check: bool = True):
        env = dict(os.environ)
        env.pop("HEXZ_PASSWORD", None)
        if password is not None:
            env["HEXZ_PASSWORD"] = password
        r = subprocess.run(
            [self.binary, *map(str, args)],
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
        )
        if check and r.returncode != 0:
            raise AssertionError(f"hexz {' '.join(map(str, args))} failed: {r.stderr}")
        return r

    def pack(self, out: Path, *, disk: Path | None = None, memory: Path | None = None,
             extra=(), password: str | None = None) -> Path:
        args = ["pack", "-o", out]
        if disk is not None:
            args += ["--disk", disk]
        if memory is not None:
            args += ["--memory", memory]
        self.run(*args, *extra, password=password)
        return out

    def error(self, *args: str, password: str | None = None) -> str:
        """The one-line message after `hexz: error: ` of a failing command."""
        r = self.run(*args, password=password, check=False)
        assert r.returncode != 0, f"hexz {args} unexpectedly succeeded"
        line = r.stderr.strip().splitlines()[-1]
        prefix = "hexz: error: "
        assert line.startswith(prefix), r.stderr
        return line[len(prefix):]


@pytest.fixture(scope="session")
def workdir():
    base = os.environ.get("HEXZ_TEST_TMP", "/var/tmp")
    d = Path(tempfile.mkdtemp(prefix="hexz-py-test-", dir=base if os.path.isdir(base) else None))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def cli(hexz_bin, workdir) -> Cli:
    return Cli(hexz_bin, workdir)


def make_data(n: int, seed: int) -> bytes:
    """Half compressible text-like bytes, half random, with a run of zeros."""
    rng = np.random.default_rng(seed)
    half = n // 2
    a = (np.arange(half) % 97).astype(np.uint8)
    b = rng.integers(0, 256, n - half, dtype=np.uint8)
    data = np.concatenate([a, b])
    data[n // 3 : n // 3 + min(200_000, n // 10)] = 0
    return data.tobytes()


RECORD = 4096
NRECORDS = 3000


def records_bytes(n: int = NRECORDS, size: int = RECORD) -> bytes:
    """Record i starts with i as u64 little-endian; the rest is a pattern of i."""
    arr = np.empty((n, size), dtype=np.uint8)
    idx = np.arange(n, dtype=np.uint64)
    arr[:, :8] = idx.view(np.uint8).reshape(n, 8)
    arr[:, 8:] = ((idx[:, None] * 7 + np.arange(size - 8, dtype=np.uint64)[None, :]) % 251).astype(np.uint8)
    return arr.tobytes()


@pytest.fixture(scope="session")
def plain(cli, workdir):
    """(archive, disk bytes, memory bytes) of a plain LZ4 archive with both streams."""
    disk = make_data(3 << 20, 1)
    mem = make_data(1 << 20, 2)
    (workdir / "plain.disk").write_bytes(disk)
    (workdir / "plain.mem").write_bytes(mem)
    out = cli.pack(workdir / "plain.hxz", disk=workdir / "plain.disk", memory=workdir / "plain.mem")
    return out, disk, mem


@pytest.fixture(scope="session")
def records(cli, workdir):
    """(archive, bytes) of NRECORDS records of RECORD bytes each."""
    data = records_bytes()
    (workdir / "records.raw").write_bytes(data)
    out = cli.pack(workdir / "records.hxz", disk=workdir / "records.raw")
    return out, data
