"""Files read from outside the store are part of a stage's identity, by content."""
import os

from olmo3_core.config.compose import compose_config
from olmo3_core.inputs import DigestCache
from olmo3_core.plan import build_plan


def _write(path, rows):
    path.write_text("".join(f'{{"id": "{i}", "text": "{t}"}}\n' for i, t in enumerate(rows)))


def _fingerprints(root):
    cfg = compose_config(["preset=micro", f"+data.sources.web={{kind: files, paths: ['{root}/*.jsonl']}}",
                          "posttrain.branches=[instruct]", f"posttrain.instruct.sft.files=['{root.parent}/sft.jsonl']"])
    return {name: spec.fingerprint for name, spec in build_plan(cfg).stages.items()}


def test_changed_or_added_input_files_change_the_data_fingerprint(tmp_path):
    web = tmp_path / "web"
    web.mkdir()
    _write(web / "a.jsonl", ["first document"])
    (tmp_path / "sft.jsonl").write_text('{"messages": []}\n')
    before = _fingerprints(web)
    assert _fingerprints(web) == before, "an unchanged file keeps its fingerprint"
    _write(web / "a.jsonl", ["first document, edited"])
    edited = _fingerprints(web)
    assert edited["data"] != before["data"] and edited["pretrain"] != before["pretrain"]
    _write(web / "b.jsonl", ["a new file the glob now matches"])
    assert _fingerprints(web)["data"] != edited["data"]


def test_a_changed_post_training_file_reruns_only_its_step(tmp_path):
    web = tmp_path / "web"
    web.mkdir()
    _write(web / "a.jsonl", ["doc"])
    sft = tmp_path / "sft.jsonl"
    sft.write_text('{"messages": [{"role": "user", "content": "a"}]}\n')
    before = _fingerprints(web)
    sft.write_text('{"messages": [{"role": "user", "content": "b"}]}\n')
    after = _fingerprints(web)
    assert {n for n in before if before[n] != after[n]} == {"instruct/sft", "instruct/dpo", "instruct/rlvr",
                                                            "instruct/eval", "instruct/export"}


def test_digest_cache_rehashes_a_file_rewritten_in_place_with_the_same_size(tmp_path):
    cache = DigestCache(tmp_path / "digests.sqlite")
    path = tmp_path / "f.txt"
    path.write_text("aaaa")
    first = cache.sha256(path)
    stat = os.stat(path)
    path.write_text("bbbb")  # same size; mtime moves on
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert cache.sha256(path) != first
