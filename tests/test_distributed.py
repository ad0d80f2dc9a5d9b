"""The same encode on a Dask cluster (issue 15, item 9): a local cluster of two worker
processes encodes three generated clips through ``encode_many(..., executor=...)`` and
writes the bytes the single-machine path writes. Needs the ``distributed`` extra
(``make install`` installs it); skipped without it."""

from __future__ import annotations

import os

import pytest

distributed = pytest.importorskip("distributed")

from test_batch import make_clip  # noqa: E402


def test_dask_cluster_writes_the_single_machine_bytes(tmp_path):
    import pacodec
    from pacodec.batch import encode_many

    clips = [make_clip(tmp_path / f"clip{i}.mkv", 10 + i, frames=8) for i in range(3)]
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        results = encode_many(clips, tmp_path / "cluster", executor=client.get_executor())
        pids = set(client.run(os.getpid).values())
    assert len(pids) == 2 and os.getpid() not in pids  # two worker processes, not this one
    assert [r.ok for r in results] == [True, True, True], [r.error for r in results]
    for clip in clips:
        single = tmp_path / f"single-{clip.stem}.pcz"
        pacodec.encode(clip, single)
        assert (tmp_path / "cluster" / f"{clip.stem}.pcz").read_bytes() == single.read_bytes()
