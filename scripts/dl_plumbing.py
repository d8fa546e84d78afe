#!/usr/bin/env python3
"""What a 2-worker DataLoader can carry with no storage at all: a dataset whose batches are
numpy views of one array filled in memory (the 50k sample sizes of scripts/bench_py.py,
log-uniform 4-150 KiB, batch 64), with the result pipe as torch leaves it (64 KiB) and
enlarged to 1 MiB the way hexz.torch's datasets enlarge their own
(docs/BENCHMARKS.md, "Python"):

    python scripts/dl_plumbing.py [--rounds 2]

Prints samples/s and the main process's CPU seconds per pass."""

import argparse
import os
import time

import numpy as np
from torch.utils.data import DataLoader, Dataset

from bench_py import as_list, widen_pipe


class Filled(Dataset):
    """Batches of views of one array per batch, filled with a constant (no storage)."""

    def __init__(self, sizes: np.ndarray) -> None:
        self.sizes = sizes

    def __len__(self) -> int:
        return len(self.sizes)

    def __getitems__(self, idx):
        lens = self.sizes[idx]
        buf = np.empty(int(lens.sum()), np.uint8)
        buf.fill(7)
        ends = np.cumsum(lens)
        return [buf[a:b] for a, b in zip((ends - lens).tolist(), ends.tolist())]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--samples", type=int, default=50_000)
    args = ap.parse_args()
    rng = np.random.default_rng(1)
    sizes = np.exp(rng.uniform(np.log(4 << 10), np.log(150 << 10), args.samples)).astype(np.int64)
    for _ in range(args.rounds):
        for wide in (False, True):
            extra = {"worker_init_fn": widen_pipe} if wide else {}
            dl = DataLoader(Filled(sizes), batch_size=64, num_workers=2, collate_fn=as_list, **extra)
            t, c, n = time.perf_counter(), os.times(), 0
            for b in dl:
                n += len(b)
            el, c2 = time.perf_counter() - t, os.times()
            main_cpu = c2.user - c.user + c2.system - c.system
            print(f"pipe {'1 MiB ' if wide else '64 KiB'}: {n / el:7.0f} samples/s, "
                  f"main process CPU {main_cpu:.2f} s in {el:.2f} s", flush=True)


if __name__ == "__main__":
    main()
