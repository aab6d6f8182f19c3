"""The data stage: sources -> curated documents -> tokenizer -> three packed mixes + datasheet.

Phases: (1) plan shards (materializing the built-in sources as Dolma JSONL), (2) curate shards in
parallel, (3) deduplicate globally in a fixed order, (4) train the tokenizer on the curated text,
(5) tokenize shards in parallel, (6) mix and pack, (7) write the datasheet. Everything that shapes
the output comes from `ctx.config`; `workers` and `executor` only decide where work runs.

A configured source left with no documents after curation and dedup fails the stage, naming what
happened to its records, unless it is `optional` (then it is left out and the datasheet says so).
"""
from __future__ import annotations

import itertools
import json
import logging
import shutil
from collections import Counter
from pathlib import Path
from typing import Any, Iterator

from olmo3_core.chat import EOS_TOKEN
from olmo3_core.data import datasheet, provenance, tokenizer
from olmo3_core.data.builtin import GENERATORS
from olmo3_core.data.config import MIX_NAMES, DataConfig
from olmo3_core.data.decontam import Decontaminator, build_decontaminator
from olmo3_core.data.dedup import Deduplicator, Duplicate
from olmo3_core.data.documents import JsonlWriter, file_digest, read_jsonl
from olmo3_core.data.executor import make_executor, map_ordered
from olmo3_core.data.mixing import EmptyMixError, SourceDocs, interleave, plan_mix
from olmo3_core.data.pipeline import ShardReport, ShardTask, TokenizeTask, curate_shard, tokenize_shard
from olmo3_core.inputs import FileIdentity, InputChanged
from olmo3_core.stages import StageContext, StageResult

log = logging.getLogger(__name__)
Drops = dict[int, dict[int, Duplicate]]  # report index -> documents-file row -> why it was dropped


class EmptySourceError(RuntimeError):
    """A required source yielded no documents: a mix without it is not the mix that was configured."""


def _materialize(docs: Iterator[dict], out: Path, per_shard: int) -> list[str]:
    """Built-in documents -> `sources/<name>/shard_N.jsonl.gz`, read back like any user file."""
    uris = []
    for n, batch in enumerate(iter(lambda: list(itertools.islice(docs, per_shard)), [])):
        with JsonlWriter(out / f"shard_{n:05d}.jsonl.gz") as writer:
            for doc in batch:
                writer.write(doc)
        uris.append(str(writer.path))
    return uris


def plan_shards(cfg: DataConfig, files: tuple[FileIdentity, ...], out: Path, decontaminator: Decontaminator | None
                ) -> tuple[list[ShardTask], list[tuple[str, str, dict, str | None]]]:
    """Shard tasks for every source, plus (source, uri, storage options, planned digest) of every raw
    input read. File sources read exactly the files the plan resolved (and fingerprinted)."""
    tasks, raw = [], []
    for name, src in cfg.sources.items():
        options = {**cfg.storage_options, **src.storage_options}
        if src.kind in GENERATORS:
            docs, inputs = GENERATORS[src.kind](name, src, cfg.seed)
            groups = [[u] for u in _materialize(docs, out / "sources" / name, src.docs_per_shard)]
            options, planned = {}, {}
        else:
            planned = {f.uri: f.digest for f in files if f.source == name}
            if not planned:
                raise ValueError(f"data source {name!r}: no input files were resolved for it (the plan resolves "
                                 f"data.sources.{name}.paths; run the stage through a plan)")
            inputs = list(planned)
            per = src.docs_per_shard if src.kind == "pdf" else 1
            groups = [inputs[i : i + per] for i in range(0, len(inputs), per)]
        raw += [(name, uri, options, planned.get(uri)) for uri in inputs]
        tasks += [ShardTask(name, f"shard_{i:05d}", uris, "pdf" if src.kind == "pdf" else "documents",
                            cfg.processor_chain(name), cfg.dedup, str(out), options, src.pdf_backend,
                            cfg.quarantine_sample_chars, decontaminator) for i, uris in enumerate(groups)]
    return tasks, raw


def _digest(item: tuple[str, str, dict, str | None]) -> dict[str, Any]:
    """A raw input's sha256 for lineage; a local file must still be what the plan fingerprinted."""
    source, uri, options, planned = item
    sha, size = file_digest(uri, options)
    if planned and planned.startswith("sha256:") and planned != f"sha256:{sha}":
        raise InputChanged(f"data source {source!r}: {uri} changed after the plan was made; rerun to plan with it")
    record = {"uri": uri if "://" in uri else Path(uri).resolve().as_uri(), "sha256": sha, "source": source, "bytes": size}
    return record | ({"identity": planned} if planned else {})


def deduplicate(cfg: DataConfig, reports: list[ShardReport], out: Path, progress) -> Drops:
    """Global dedup in config order; writes `attributes/<source>/<shard>.dedup.jsonl.gz`."""
    dedup, drops = Deduplicator(cfg.dedup), {}
    for n, rep in enumerate(reports):
        drops[n] = {}
        with JsonlWriter(out / "attributes" / rep.source / f"{rep.shard}.dedup.jsonl.gz") as attrs:
            for row, (doc_id, digest) in enumerate(zip(rep.ids, rep.hashes)):
                sig = rep.signatures[row] if rep.signatures is not None else None
                dup = dedup.add((n, row), digest, sig)
                record = {"id": doc_id, "doc_row": row, "decision": dup.reason if dup else "kept"}
                if dup:
                    drops[n][row] = dup
                    kept = reports[dup.kept[0]]
                    record |= {"kept_in_favour_of": {"id": kept.ids[dup.kept[1]], "source": kept.source},
                               "similarity": round(dup.similarity, 4)}
                attrs.write(record)
        progress(n + 1, len(reports), "deduplicate")
    return drops


def source_fate(name: str, reports: list[ShardReport], drops: Drops) -> tuple[int, str]:
    """(documents kept, what happened to the source's records), e.g. "data source 'web': 0 of 3 records
    kept: 2 malformed_json (quarantined in quarantine/web/), 1 missing_text (quarantined in ...)"."""
    fate: Counter = Counter()
    records = kept = 0
    uris = []
    for n, rep in enumerate(reports):
        if rep.source != name:
            continue
        uris += rep.uris
        records += rep.docs_in + sum(rep.quarantined.values())
        kept += rep.docs_out - len(drops[n])
        fate.update({f"{reason} (quarantined in quarantine/{name}/)": k for reason, k in rep.quarantined.items()})
        fate.update({f"removed by {reason}": k for reason, k in rep.removed.items()})
        fate.update(f"removed by {dup.reason}" for dup in drops[n].values())
    what = ", ".join(f"{k} {reason}" for reason, k in fate.most_common()) or (
        f"its {len(uris)} input file(s) hold no records: {', '.join(uris[:5]) or 'none'}")
    return kept, f"data source {name!r}: {kept} of {records} records kept: {what}"


def left_out_sources(cfg: DataConfig, reports: list[ShardReport], drops: Drops) -> dict[str, str]:
    """Optional sources with no document left (name -> what happened to its records); raises
    `EmptySourceError` naming every required source with none."""
    fates = {name: source_fate(name, reports, drops) for name in cfg.sources}
    empty = {name: fate for name, (kept, fate) in fates.items() if not kept}
    required = [fate for name, fate in empty.items() if not cfg.sources[name].optional]
    if required:
        raise EmptySourceError("; ".join(required) + ". Fix the inputs, or set data.sources.<name>.optional=true "
                               "to train without that source")
    for fate in empty.values():
        log.warning("%s; optional, so it is left out of every mix", fate)
    return empty


def _documents_file(rep: ShardReport) -> str:
    return f"documents/{rep.source}/{rep.shard}.jsonl.gz"


def training_texts(reports: list[ShardReport], drops: Drops, out: Path, limit: int) -> Iterator[str]:
    """Curated texts, round-robin over sources so each shapes the vocabulary, up to `limit` chars."""
    def source_stream(source: str) -> Iterator[str]:
        for n, rep in enumerate(reports):
            if rep.source == source:
                for row, doc in enumerate(read_jsonl(out / _documents_file(rep))):
                    if row not in drops[n]:
                        yield doc["text"]

    streams = [source_stream(s) for s in dict.fromkeys(r.source for r in reports)]
    used = 0
    for text in (t for group in itertools.zip_longest(*streams) for t in group if t is not None):
        if used >= limit:
            return
        yield text[: limit - used]
        used += len(text)


def tokenize(executor, names: list[str], reports: list[ShardReport], drops: Drops, out: Path, eos_id: int,
             progress) -> dict[str, SourceDocs]:
    """Every source in `names` (one without shards or kept documents has empty arrays)."""
    tasks = [TokenizeTask(str(out / _documents_file(r)), frozenset(drops[n]), str(out / "tokenizer" / "tokenizer.json"),
                          eos_id, str(out / "tokens" / r.source / f"{r.shard}.npy")) for n, r in enumerate(reports)]
    results = map_ordered(executor, tokenize_shard, tasks, progress, "tokenize")
    shards: dict[str, list] = {s: [] for s in names}
    for rep, task, (rows, lengths) in zip(reports, tasks, results):
        shards[rep.source].append((Path(task.out_path).relative_to(out).as_posix(), _documents_file(rep), rows, lengths,
                                   [rep.ids[r] for r in rows]))
    return {name: SourceDocs.from_shards(name, parts) for name, parts in shards.items()}


def run(ctx: StageContext) -> StageResult:
    cfg: DataConfig = ctx.config
    out = Path(ctx.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    decontaminator, notes = build_decontaminator(cfg.decontam, cfg.storage_options)  # sets, seed resolved at compose time
    tasks, raw = plan_shards(cfg, ctx.files, out, decontaminator)
    with make_executor(cfg) as executor:
        raw_inputs = map_ordered(executor, _digest, raw, ctx.progress, "hash raw inputs")
        reports = map_ordered(executor, curate_shard, tasks, ctx.progress, "curate shards")
        log.info("curated %d shards: %d of %d documents passed the filters", len(reports),
                 sum(r.docs_out for r in reports), sum(r.docs_in for r in reports))
        drops = deduplicate(cfg, reports, out, ctx.progress)
        log.info("dedup removed %d documents", sum(map(len, drops.values())))
        left_out = left_out_sources(cfg, reports, drops)
        tok = (tokenizer.load(cfg.tokenizer.path, out / "tokenizer") if cfg.tokenizer.path else
               tokenizer.train(training_texts(reports, drops, out, cfg.tokenizer.train_chars), cfg.tokenizer, out / "tokenizer"))
        sources = tokenize(executor, list(cfg.sources), reports, drops, out, tok.convert_tokens_to_ids(EOS_TOKEN),
                           ctx.progress)
    sheet = _mix_and_describe(cfg, reports, drops, sources, out, notes + [
        f"{fate}; optional, so it is left out of every mix" for fate in left_out.values()], len(tok))
    shutil.rmtree(out / "tokens")
    return _result(ctx, sheet, raw_inputs, out)


def _mix_and_describe(cfg: DataConfig, reports, drops: Drops, sources: dict[str, SourceDocs], out: Path,
                      notes: list[str], vocab: int) -> dict[str, Any]:
    dups: dict[str, Counter] = {s: Counter() for s in cfg.sources}
    for n, rep in enumerate(reports):
        dups[rep.source].update(d.reason for d in drops[n].values())
    sheet: dict[str, Any] = {"sources": {s: datasheet.source_sheet([r for r in reports if r.source == s], dups[s],
                                                                   sources[s], out)
                                         for s in cfg.sources}, "mixes": {}, "notes": notes,
                             "tokenizer": {"vocab_size": vocab, "source": cfg.tokenizer.path or "trained",
                                           "train_chars": 0 if cfg.tokenizer.path else cfg.tokenizer.train_chars}}
    for mix in MIX_NAMES:
        try:
            plan = plan_mix(cfg, mix, sources)
        except EmptyMixError as exc:
            raise EmptyMixError(f"{exc}. Per-source removals: " + json.dumps(
                {s: {"docs_in": v["docs_in"], "removed": v["removed"], "quarantined": v["quarantined"]}
                 for s, v in sheet["sources"].items()})) from exc
        packed = provenance.pack(out, mix, interleave(plan, cfg.seed), sources, cfg.shard_tokens)
        sheet["mixes"][mix] = datasheet.mix_sheet(plan, packed, cfg.mixes[mix].tokens)
        sheet["notes"] += plan.notes
    return sheet


def _result(ctx: StageContext, sheet: dict[str, Any], raw_inputs: list[dict], out: Path) -> StageResult:
    (out / "datasheet.json").write_text(json.dumps(sheet, indent=2))
    ctx.tracker.log_artifact(out / "datasheet.json", "datasheet")
    for plot in datasheet.plots(sheet, out):
        ctx.tracker.log_artifact(plot, "plots")
    src = sheet["sources"].values()
    metrics = {
        "docs_in": sum(s["docs_in"] for s in src), "docs_out": sum(s["docs_out"] for s in src),
        "quarantined": sum(sum(s["quarantined"].values()) for s in src),
        "dedup_removed": sum(s["dedup"]["exact"] + s["dedup"]["fuzzy"] for s in src),
        "decontam_docs": sum(s["decontam"]["docs"] for s in src),
        "curated_tokens": sum(s["tokens"] for s in src), "vocab_size": sheet["tokenizer"]["vocab_size"],
        **{f"{mix}_tokens": m["tokens"] for mix, m in sheet["mixes"].items()},
    }
    ctx.tracker.log_metrics(metrics)
    report = datasheet.markdown(sheet)
    (out / "datasheet.md").write_text(report)
    return StageResult(metrics=metrics, raw_inputs=raw_inputs, report_markdown=report)
