"""Archives read from S3 (`s3://bucket/key`): a SeaweedFS started for the session checks
every request's SigV4 signature; credentials and endpoint come from the AWS_* variables the
`s3` fixture sets, as they would for a real bucket."""

from __future__ import annotations

import os

import numpy as np
import pytest

import hexz
from conftest import NRECORDS, RECORD


def test_s3_reads_equal_the_source(s3, plain):
    path, disk, mem = plain
    url = s3.put("plain.hxz", path)
    with hexz.open(url, allow_restricted=True) as a:
        assert a.size() == len(disk)
        assert a.size("memory") == len(mem)
        assert a.read(0, len(disk)) == disk
        assert a.read(0, len(mem), "memory") == mem
        rng = np.random.default_rng(5)
        for _ in range(20):
            off = int(rng.integers(0, len(disk)))
            n = int(rng.integers(1, 300_000))
            assert a.read(off, n) == disk[off : off + n], (off, n)
        buf = np.empty(200_000, dtype=np.uint8)
        assert a.readinto(buf, 1_000_000) == buf.size
        assert buf.tobytes() == disk[1_000_000:1_200_000]
        # Sequential reading through a file object (read ahead over the network).
        with a.stream() as f:
            assert f.read() == disk


def test_s3_needs_allow_restricted_for_loopback(s3, plain):
    url = s3.put("plain2.hxz", plain[0])
    with pytest.raises(hexz.RemoteError, match="restricted"):
        hexz.open(url)


def test_s3_wrong_secret_is_refused(s3, plain, monkeypatch):
    url = s3.put("plain3.hxz", plain[0])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    with pytest.raises(hexz.HexzError):
        hexz.open(url, allow_restricted=True)


def test_s3_record_dataset_in_dataloader_with_2_workers(s3, records):
    torch = pytest.importorskip("torch")
    from torch.utils.data import DataLoader

    from hexz.torch import RecordDataset

    path, data = records
    url = s3.put("records.hxz", path)
    # The workers reopen it from its pickled URL and options (allow_restricted included)
    # and find the credentials in the environment they inherit.
    ds = RecordDataset(hexz.open(url, allow_restricted=True), RECORD)
    assert len(ds) == NRECORDS
    dl = DataLoader(ds, batch_size=32, num_workers=2, shuffle=True,
                    generator=torch.Generator().manual_seed(3))
    seen = np.zeros(NRECORDS, dtype=np.int64)
    for batch in dl:
        assert batch.shape[1] == RECORD
        for row in batch.numpy():
            i = int(row[:8].view("<u8")[0])
            assert row.tobytes() == data[i * RECORD : (i + 1) * RECORD], f"record {i}"
            seen[i] += 1
    assert (seen == 1).all(), "every record exactly once"
    assert os.environ["AWS_ENDPOINT_URL"] == s3.endpoint
