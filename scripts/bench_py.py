#!/usr/bin/env python3
"""Benchmarks of the hexz Python package (run by scripts/bench-py.sh; figures in
docs/BENCHMARKS.md, section "Python").

1. Threads: 64 KiB reads at random offsets (and block-aligned) from one Archive, 1 vs 2
   Python threads; MiB/s and the ratio.
2. DataLoader samples/s with 0 and 2 workers over the same N small samples (sizes
   log-uniform in [min, max], incompressible like JPEGs), in index order, from:
   hexz (IndexDataset over one archive), loose files in a directory, one raw file + offsets
   (numpy.memmap), and litdata (litdata.optimize, then StreamingDataset, local).
3. Images (``--section images``, runnable alone): an image pipeline on the CPU, 224 px JPEGs
   generated with Pillow, decoded and randomly cropped in 2 DataLoader workers, fed by
   hexz.torch.FileDataset over a tree archive (``hexz pack DIR``) vs torchvision ImageFolder
   over the same files loose in a directory; images/s.

Every configuration runs `--runs` times, interleaved so that machine noise hits all alike;
medians are reported. Data is generated once under --dir (a real disk) and reused.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np

import hexz


# ---------------------------------------------------------------- data


def sample_sizes(n: int, lo: int, hi: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.exp(rng.uniform(np.log(lo), np.log(hi), n)).astype(np.int64)


def prepare(d: Path, n: int, lo: int, hi: int) -> dict:
    d.mkdir(parents=True, exist_ok=True)
    meta_path = d / "meta.json"
    want = {"n": n, "lo": lo, "hi": hi, "version": 1}
    if meta_path.exists() and json.loads(meta_path.read_text()) == want:
        return want
    sizes = sample_sizes(n, lo, hi)
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    rng = np.random.default_rng(1)
    raw = d / "samples.bin"
    loose = d / "loose"
    loose.mkdir(exist_ok=True)
    t = time.perf_counter()
    with open(raw, "wb") as f:
        for i, s in enumerate(sizes):
            b = rng.bytes(int(s))
            f.write(b)
            (loose / f"{i:06d}.bin").write_bytes(b)
    np.save(d / "index.npy", np.stack([offsets, sizes], axis=1))
    print(f"generated {n} samples, {sizes.sum() / 2**30:.2f} GiB in {time.perf_counter() - t:.1f}s",
          file=sys.stderr)
    t = time.perf_counter()
    hexz.pack(d / "samples.hxz", disk=raw)
    print(f"hexz pack {time.perf_counter() - t:.1f}s", file=sys.stderr)
    t = time.perf_counter()
    make_litdata(d, n)
    print(f"litdata optimize {time.perf_counter() - t:.1f}s", file=sys.stderr)
    meta_path.write_text(json.dumps(want))
    return want


_RAW = None


def _lit_sample(i):
    global _RAW
    if _RAW is None:
        _RAW = (np.memmap(os.environ["HEXZ_BENCH_RAW"], dtype=np.uint8, mode="r"),
                np.load(os.environ["HEXZ_BENCH_INDEX"]))
    mm, idx = _RAW
    o, s = idx[i]
    return np.array(mm[o : o + s])


def make_litdata(d: Path, n: int) -> None:
    import shutil

    import litdata

    out = d / "litdata"
    shutil.rmtree(out, ignore_errors=True)
    os.environ["HEXZ_BENCH_RAW"] = str(d / "samples.bin")
    os.environ["HEXZ_BENCH_INDEX"] = str(d / "index.npy")
    litdata.optimize(fn=_lit_sample, inputs=list(range(n)), output_dir=str(out),
                     chunk_bytes="64MB", num_workers=2, mode="overwrite")


# ---------------------------------------------------------------- images


def prepare_images(d: Path, n: int, classes: int, hexz_bin: str) -> Path:
    """`n` 224x224 JPEGs (quality 90) in d/images/cls{k}/ (ImageFolder's layout), smooth
    random colour fields with noise and edges so they compress and decode like photos, and
    d/images.hxz packed from them by the hexz CLI. Reused when present."""
    import subprocess

    from PIL import Image

    root = d / "images"
    meta_path = d / "images.json"
    want = {"n": n, "classes": classes, "version": 1}
    if meta_path.exists() and json.loads(meta_path.read_text()) == want and (d / "images.hxz").exists():
        return root
    import shutil

    shutil.rmtree(root, ignore_errors=True)
    rng = np.random.default_rng(7)
    t = time.perf_counter()
    total = 0
    for i in range(n):
        c = root / f"cls{i % classes}"
        c.mkdir(parents=True, exist_ok=True)
        small = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        img = Image.fromarray(small, "RGB").resize((224, 224), Image.BICUBIC)
        arr = np.asarray(img).astype(np.int16)
        arr += rng.integers(-12, 13, arr.shape, dtype=np.int16)
        y0, x0 = rng.integers(0, 160, 2)
        arr[y0 : y0 + 40, x0 : x0 + 60] = rng.integers(0, 256, 3)
        p = c / f"{i:06d}.jpg"
        Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB").save(p, quality=90)
        total += p.stat().st_size
    print(f"generated {n} JPEGs, {total / 2**20:.1f} MiB (mean {total / n / 1024:.1f} KiB) "
          f"in {time.perf_counter() - t:.1f}s", file=sys.stderr)
    t = time.perf_counter()
    subprocess.run([hexz_bin, "pack", str(root), "-o", str(d / "images.hxz")], check=True,
                   stdin=subprocess.DEVNULL)
    print(f"hexz pack {time.perf_counter() - t:.1f}s", file=sys.stderr)
    meta_path.write_text(json.dumps(want))
    return root


class DecodeCrop:
    """Decode a JPEG (a path or an array of its bytes) and take a random 192x192 crop: the
    same work for both sources. Returns a uint8 CHW tensor."""

    def __init__(self) -> None:
        from torchvision import transforms

        self.t = transforms.Compose([transforms.RandomCrop(192), transforms.PILToTensor()])

    def __call__(self, img):
        return self.t(img)


def _decode(arr: np.ndarray):
    import io

    from PIL import Image

    return Image.open(io.BytesIO(arr)).convert("RGB")


class HexzImages:
    """FileDataset items as (crop, label), the label from the class directory, like
    ImageFolder's."""

    def __init__(self, archive: Path) -> None:
        from hexz.torch import FileDataset

        self.ds = FileDataset(archive, suffix=".jpg")
        classes = sorted({p.split("/")[0] for p in self.ds.paths})
        self.labels = [classes.index(p.split("/")[0]) for p in self.ds.paths]
        self.crop = DecodeCrop()

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int):
        return self.crop(_decode(self.ds[i])), self.labels[i]


def bench_images(kind: str, d: Path, workers: int, batch: int, seed: int) -> float:
    import torch
    from torch.utils.data import DataLoader

    if kind == "hexz FileDataset":
        ds = HexzImages(d / "images.hxz")
    else:
        from torchvision.datasets import ImageFolder

        ds = ImageFolder(str(d / "images"), transform=DecodeCrop())
    dl = DataLoader(ds, batch_size=batch, num_workers=workers, shuffle=True,
                    generator=torch.Generator().manual_seed(seed))
    got = 0
    t = time.perf_counter()
    for x, y in dl:
        assert x.shape[1:] == (3, 192, 192) and x.dtype == torch.uint8
        got += len(y)
    el = time.perf_counter() - t
    if got != len(ds):
        raise SystemExit(f"{kind}: {got} images, expected {len(ds)}")
    return got / el


def run_images(args, d: Path) -> None:
    import torch
    import torchvision

    hexz_bin = os.environ.get("HEXZ_BIN", "hexz")
    prepare_images(d, args.images, args.classes, hexz_bin)
    print(f"\n## Image pipeline: {args.images} JPEGs of 224 px, decode + random 192 px crop, "
          f"{args.workers} workers, batch {args.batch}, shuffled, median of {args.runs} "
          f"(torch {torch.__version__}, torchvision {torchvision.__version__}, "
          f"load average {os.getloadavg()[0]:.2f} at start)")
    kinds = ["hexz FileDataset", "torchvision ImageFolder"]
    res = {k: [] for k in kinds}
    for k in kinds:  # warm-up (page cache)
        bench_images(k, d, args.workers, args.batch, 0)
    for r in range(args.runs):
        for k in kinds:
            res[k].append(bench_images(k, d, args.workers, args.batch, r + 1))
    med = {k: statistics.median(v) for k, v in res.items()}
    for k in kinds:
        print(f"  {k:24s} {med[k]:8.0f} images/s   hexz/this {med[kinds[0]] / med[k]:.2f}x"
              f"   runs: {', '.join(f'{x:.0f}' for x in res[k])}")
    print(f"  load average at end {os.getloadavg()[0]:.2f}")


# ---------------------------------------------------------------- threads


def bench_threads(archive: Path, reads: int, aligned: bool, runs: int) -> dict:
    a = hexz.open(archive, cache_size=0)
    size = a.size()
    rng = np.random.default_rng(2)
    if aligned:
        offs = rng.integers(0, size // 65536 - 1, reads) * 65536
    else:
        offs = rng.integers(0, size - 65536, reads)

    def run(threads: int) -> float:
        parts = np.array_split(offs, threads)

        def work(part):
            buf = np.empty(65536, dtype=np.uint8)
            for o in part:
                a.readinto(buf, int(o))

        ts = [threading.Thread(target=work, args=(p,)) for p in parts]
        t = time.perf_counter()
        for th in ts:
            th.start()
        for th in ts:
            th.join()
        return reads * 65536 / (time.perf_counter() - t) / 2**20

    res = {1: [], 2: []}
    run(1)  # warm the page cache
    for _ in range(runs):
        for k in (1, 2):
            res[k].append(run(k))
    m1, m2 = statistics.median(res[1]), statistics.median(res[2])
    return {"1 thread MiB/s": m1, "2 threads MiB/s": m2, "ratio": m2 / m1}


def thread_archive(d: Path, name: str, compressible: bool) -> Path:
    """A 512 MiB archive for the thread section: random bytes (every block stored raw), or
    random bytes over 8 symbols (LZ4 compresses them, every read decodes)."""
    d.mkdir(parents=True, exist_ok=True)
    arc = d / f"threads-{name}.hxz"
    if not arc.exists():
        raw = d / f"threads-{name}.bin"
        rng = np.random.default_rng(1)
        with open(raw, "wb") as f:
            for _ in range(16):
                b = rng.integers(0, 256, 32 << 20, dtype=np.uint8)
                f.write(((b % 8) * 16 if compressible else b).tobytes())
        hexz.pack(arc, disk=raw)
        raw.unlink()
    return arc


def run_threads(args, d: Path) -> None:
    print(f"## Threads: 64 KiB reads, cache_size=0 (every read decodes), {args.reads} reads, "
          f"median of {args.runs}; cores: {os.cpu_count()}, load average at start "
          f"{os.getloadavg()[0]:.2f}, hexz {hexz.__version__}")
    for name, comp in (("incompressible", False), ("lz4", True)):
        arc = thread_archive(d, name, comp)
        for aligned in (False, True):
            r = bench_threads(arc, args.reads, aligned, args.runs)
            what = f"{name}, {'block-aligned' if aligned else 'random offsets'}"
            print(f"{what:32s} 1 thread {r['1 thread MiB/s']:7.0f} MiB/s   2 threads "
                  f"{r['2 threads MiB/s']:7.0f} MiB/s   ratio {r['ratio']:.2f}x")


# ---------------------------------------------------------------- datasets


def as_list(batch):
    return batch


class LooseFiles:
    def __init__(self, d: Path, n: int) -> None:
        self.d = str(d)
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> np.ndarray:
        with open(f"{self.d}/{i:06d}.bin", "rb") as f:
            return np.frombuffer(f.read(), dtype=np.uint8)


class RawMemmap:
    def __init__(self, raw: Path, index: np.ndarray) -> None:
        self.raw = str(raw)
        self.index = index
        self.mm = None

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> np.ndarray:
        if self.mm is None:
            self.mm = np.memmap(self.raw, dtype=np.uint8, mode="r")
        o, s = self.index[i]
        return np.array(self.mm[o : o + s])

    def __getstate__(self):
        return {"raw": self.raw, "index": self.index, "mm": None}


def widen_pipe(_worker_id: int) -> None:
    """worker_init_fn giving any source's worker the 1 MiB result pipe a hexz dataset's
    worker sets up for itself (hexz.torch._widen_worker_pipe; it runs inside torch's worker
    loop here too), to show what the plumbing alone is worth."""
    from hexz.torch import _widen_worker_pipe

    _widen_worker_pipe()


def loader(kind: str, d: Path, n: int, workers: int, batch: int, wide: bool = False):
    from torch.utils.data import DataLoader

    index = np.load(d / "index.npy")[:n]
    init = {"worker_init_fn": widen_pipe} if wide and workers else {}
    if kind == "litdata":
        import litdata

        ds = litdata.StreamingDataset(str(d / "litdata"), shuffle=False)
        ds = ds if n >= len(ds) else _Head(ds, n)
        return litdata.StreamingDataLoader(ds, batch_size=batch, num_workers=workers,
                                           collate_fn=as_list, **init) if isinstance(ds, litdata.StreamingDataset) \
            else DataLoader(ds, batch_size=batch, num_workers=workers, collate_fn=as_list, **init)
    if kind == "hexz":
        from hexz.torch import IndexDataset

        ds = IndexDataset(d / "samples.hxz", index)
    elif kind == "loose files":
        ds = LooseFiles(d / "loose", n)
    elif kind == "raw + memmap":
        ds = RawMemmap(d / "samples.bin", index)
    else:
        raise ValueError(kind)
    return DataLoader(ds, batch_size=batch, num_workers=workers, collate_fn=as_list, **init)


class _Head:
    def __init__(self, ds, n):
        self.ds, self.n = ds, n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return self.ds[i]


def bench_loader(kind: str, d: Path, n: int, workers: int, batch: int, wide: bool = False) -> float:
    dl = loader(kind, d, n, workers, batch, wide)
    got = 0
    nbytes = 0
    t = time.perf_counter()
    for b in dl:
        got += len(b)
        nbytes += sum(len(x) for x in b)
    el = time.perf_counter() - t
    if got != n:
        raise SystemExit(f"{kind}: {got} samples, expected {n}")
    return n / el


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", default="/var/tmp/hexz-bench-py")
    ap.add_argument("--samples", type=int, default=50_000)
    ap.add_argument("--min", type=int, default=4 << 10)
    ap.add_argument("--max", type=int, default=150 << 10)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--reads", type=int, default=8000)
    ap.add_argument("--section", choices=["all", "streams", "images", "threads"], default="all",
                    help="streams: threads + DataLoader samples/s; images: the JPEG pipeline; "
                         "threads: thread scaling alone, on incompressible and LZ4-compressible "
                         "archives (no torch or litdata needed)")
    ap.add_argument("--images", type=int, default=5000, help="JPEGs of the image section")
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--workers", type=int, default=2, help="DataLoader workers (images)")
    args = ap.parse_args()
    d = Path(args.dir)
    if args.section == "threads":
        run_threads(args, d)
        return
    if args.section in ("all", "images"):
        run_images(args, d)
        if args.section == "images":
            return
    meta = prepare(d, args.samples, args.min, args.max)
    index = np.load(d / "index.npy")
    total = int(index[:, 1].sum())
    print(f"# {meta['n']} samples of {args.min // 1024}-{args.max // 1024} KiB "
          f"(log-uniform, mean {total / meta['n'] / 1024:.0f} KiB, {total / 2**30:.2f} GiB), "
          f"cores: {os.cpu_count()}, python {sys.version.split()[0]}, hexz {hexz.__version__}")

    print("\n## Threads: 64 KiB reads, cache_size=0 (every read decodes)")
    for aligned in (False, True):
        r = bench_threads(d / "samples.hxz", args.reads, aligned, args.runs)
        what = "block-aligned offsets" if aligned else "random offsets"
        print(f"{what:22s} 1 thread {r['1 thread MiB/s']:7.0f} MiB/s   2 threads "
              f"{r['2 threads MiB/s']:7.0f} MiB/s   ratio {r['ratio']:.2f}x")

    print(f"\n## DataLoader samples/s (batch {args.batch}, index order, fork workers, "
          f"median of {args.runs})")
    kinds = ["hexz", "loose files", "raw + memmap", "litdata"]
    # "2w": 2 workers, every source's result pipe enlarged as hexz's workers do their own.
    modes = {0: "workers=0", 2: "workers=2", "2w": "workers=2, every source's worker pipe 1 MiB"}
    res = {(k, w): [] for k in kinds for w in modes}
    for k in kinds:  # one warm-up pass each (page cache, litdata's index)
        bench_loader(k, d, args.samples, 2, args.batch)
    for _ in range(args.runs):
        for w in modes:
            for k in kinds:
                res[(k, w)].append(bench_loader(k, d, args.samples, 2 if w == "2w" else w,
                                                args.batch, w == "2w"))
    for w, title in modes.items():
        med = {k: statistics.median(res[(k, w)]) for k in kinds}
        print(f"\n{title}")
        for k in kinds:
            print(f"  {k:14s} {med[k]:9.0f} samples/s   hexz/this {med['hexz'] / med[k]:.2f}x"
                  f"   runs: {', '.join(f'{x:.0f}' for x in res[(k, w)])}")


if __name__ == "__main__":
    main()
