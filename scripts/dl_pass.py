#!/usr/bin/env python3
"""Times DataLoader passes over the benchmark samples (scripts/bench-py.sh's data) through
hexz.torch.IndexDataset, for A/B runs of two wheels installed in turn:

    python scripts/dl_pass.py [--dir /var/tmp/hexz-bench-py] [--passes 3] [--workers 0]

Prints samples/s per pass (batch 64, index order, items as a list)."""

import argparse
import time

import numpy as np
from torch.utils.data import DataLoader

from hexz.torch import IndexDataset

from bench_py import as_list


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", default="/var/tmp/hexz-bench-py")
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument("--workers", type=int, default=0)
    args = ap.parse_args()
    index = np.load(f"{args.dir}/index.npy")
    ds = IndexDataset(f"{args.dir}/samples.hxz", index)
    for _ in range(args.passes):
        dl = DataLoader(ds, batch_size=64, num_workers=args.workers, collate_fn=as_list)
        t, n = time.perf_counter(), 0
        for b in dl:
            n += len(b)
        print(f"{n / (time.perf_counter() - t):.0f} samples/s")


if __name__ == "__main__":
    main()
