"""A configured source that yields no documents fails the data stage, naming what happened to its
records, unless it is optional: then it is left out and the datasheet keeps its configured target."""
from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from olmo3_core.data.stage import EmptySourceError

from .conftest import FRENCH, doc, write_jsonl


def _malformed(path):
    """Three records, none readable: two broken JSON lines and one without a text field."""
    return write_jsonl(path, ['{"id": "a", "text": "no closing brace"', "not json at all", {"id": "c", "body": "x"}])


def _sources(root, bad: dict) -> dict:
    good = {"kind": "files", "paths": [str(root / "web" / "part-0.jsonl.gz")], "processors": "prose"}
    return {"web": good, **{name: {"kind": "files", "paths": [str(path)], "processors": "prose", **extra}
                            for name, (path, extra) in bad.items()}}


def test_sources_without_documents_fail_the_stage_naming_each_and_why(planted, tmp_path, make_config, run_data_stage):
    root, _ = planted
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    no_text = tmp_path / "no_text.parquet"
    pq.write_table(pa.Table.from_pylist([{"id": "p1", "body": "x"}, {"id": "p2", "body": "y"}]), no_text)
    french = write_jsonl(tmp_path / "french.jsonl", [doc("fr", FRENCH)])
    cfg = make_config(_sources(root, {"empty": (empty, {}), "broken": (_malformed(tmp_path / "broken.jsonl"), {}),
                                      "columns": (no_text, {}), "foreign": (french, {})}))
    with pytest.raises(EmptySourceError) as err:
        run_data_stage(cfg, tmp_path / "out")
    message = str(err.value)
    assert f"data source 'empty': 0 of 0 records kept: its 1 input file(s) hold no records: {empty}" in message
    assert ("data source 'broken': 0 of 3 records kept: 2 malformed_json (quarantined in quarantine/broken/), "
            "1 missing_text (quarantined in quarantine/broken/)") in message
    assert "data source 'columns': 0 of 2 records kept: 2 missing_text (quarantined" in message
    assert "data source 'foreign': 0 of 1 records kept: 1 removed by langid:other_language" in message
    assert "'web'" not in message and "data.sources.<name>.optional=true" in message
    assert not (tmp_path / "out" / "datasheet.json").exists()


def test_an_optional_empty_source_is_left_out_with_its_configured_target(planted, tmp_path, make_config, run_data_stage):
    root, _ = planted
    cfg = make_config(_sources(root, {"broken": (_malformed(tmp_path / "broken.jsonl"), {"optional": True})}))
    result = run_data_stage(cfg, tmp_path / "out")
    sheet = json.loads((tmp_path / "out" / "datasheet.json").read_text())
    for name, mix in sheet["mixes"].items():
        assert mix["sources"]["broken"] == {"target": 0.5, "achieved": 0.0, "tokens": 0, "docs": 0, "unique_docs": 0,
                                            "epochs": 0.0}, name
        assert mix["sources"]["web"]["target"] == 0.5 and mix["sources"]["web"]["achieved"] == 1.0
        # web's own half would be ~0.5 of the target; whole documents (~700 tokens here) make it inexact
        assert mix["tokens"] > 0.75 * mix["target_tokens"], "the present source fills the missing share"
        assert any("['broken'] have no documents" in note for note in mix["notes"])
    assert sheet["sources"]["broken"]["docs_out"] == 0
    assert sheet["sources"]["broken"]["quarantined"] == {"malformed_json": 2, "missing_text": 1}
    assert any(note.startswith("data source 'broken': 0 of 3 records kept") and "left out" in note
               for note in sheet["notes"])
    assert "| pretrain | broken | 0.500 | 0.000 | 0 |" in result.report_markdown
