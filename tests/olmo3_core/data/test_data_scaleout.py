"""Scale-out: sources read from S3 (moto's server on loopback) and shards run on a local Dask cluster.

Both runs curate the same planted files, so they must produce byte-identical mixes: where data
lives and where work runs never changes the output.
"""
from __future__ import annotations

import json
import socket

import numpy as np
import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3(planted, tmp_path_factory):
    """A moto S3 endpoint holding the planted web files and a user eval set."""
    from moto.server import ThreadedMotoServer

    mp = pytest.MonkeyPatch()
    mp.setenv("AWS_ACCESS_KEY_ID", "testing")
    mp.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    import s3fs

    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": endpoint})
    fs.mkdir("corpus")
    root, _ = planted
    for path in sorted((root / "web").iterdir()):
        fs.put(str(path), f"corpus/web/{path.name}")
    eval_file = tmp_path_factory.mktemp("evalset") / "private_eval.jsonl"
    eval_file.write_text(json.dumps({"prompt": " ".join(f"secret{i} benchmark question words here" for i in range(6))}) + "\n")
    fs.put(str(eval_file), "corpus/evals/private_eval.jsonl")
    yield endpoint
    server.stop()
    mp.undo()


def _shards(out):
    return {p.relative_to(out).as_posix(): np.load(p) for p in sorted((out / "mixes").glob("*/shard_*.npy"))}


@pytest.mark.slow
def test_s3_sources_and_dask_executor_give_identical_output(s3, planted, tmp_path, make_config, run_data_stage):
    root, expected = planted
    options = {"client_kwargs": {"endpoint_url": s3}}
    on_s3 = make_config({"web": {"kind": "files", "paths": ["s3://corpus/web/part-*"], "processors": "prose"}},
                        storage_options=options, decontam={"files": ["s3://corpus/evals/private_eval.jsonl"]})
    result = run_data_stage(on_s3, tmp_path / "s3")
    assert sorted(r["uri"] for r in result.raw_inputs) == [f"s3://corpus/web/{p.name}" for p in sorted((root / "web").iterdir())]
    sheet = json.loads((tmp_path / "s3" / "datasheet.json").read_text())["sources"]["web"]
    assert sheet["removed"]["dedup:fuzzy"] == len(expected["plants"]["near"])
    assert sum(sheet["quarantined"].values()) == 4

    local = make_config({"web": {"kind": "files", "paths": [str(root / "web" / "part-*")], "processors": "prose"}},
                        executor={"kind": "dask", "address": None}, decontam={"files": [str(tmp_path / "none.jsonl")]})
    (tmp_path / "none.jsonl").write_text(json.dumps({"prompt": " ".join(f"secret{i} benchmark question words here" for i in range(6))}) + "\n")
    run_data_stage(local, tmp_path / "dask")
    a, b = _shards(tmp_path / "s3"), _shards(tmp_path / "dask")
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
