"""The datasheet: what went in, what came out and why, per source and per mix.

Written as `datasheet.json`, rendered to markdown (the stage report) and to PNG plots (token share
per source in each mix, removals by reason), so every curation decision is accounted for.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from olmo3_core.data.mixing import MixPlan, SourceDocs
from olmo3_core.data.pipeline import ShardReport


def _input_name(uri: str, out: Path) -> str:
    """A built-in source's shards (materialized in the artifact) by their path inside it, so the
    datasheet does not depend on where the artifact is stored."""
    return Path(uri).relative_to(out).as_posix() if Path(uri).is_relative_to(out) else uri


def _distinct_items(reports: list[ShardReport]) -> dict[str, int]:
    """Per eval set, how many of its items were found in at least one document."""
    found: dict[str, set[int]] = {}
    for report in reports:
        for name, indices in report.decontam_items.items():
            found.setdefault(name, set()).update(indices)
    return {name: len(indices) for name, indices in sorted(found.items())}


def source_sheet(reports: list[ShardReport], dups: Counter, docs: SourceDocs, out: Path) -> dict[str, Any]:
    """One source's totals; `dups` counts dedup reasons for its documents; `out` is the artifact dir."""
    total = lambda attr: sum(getattr(r, attr) for r in reports)  # noqa: E731
    merged = lambda attr: dict(sum((getattr(r, attr) for r in reports), Counter()))  # noqa: E731
    removed = Counter(merged("removed")) + dups
    after_filters = total("docs_out")
    return {
        "shards": len(reports),
        "inputs": sorted({_input_name(u, out) for r in reports for u in r.uris}),
        "docs_in": total("docs_in"),
        "docs_out": int(docs.length.size),
        "quarantined": merged("quarantined"),
        "removed": dict(sorted(removed.items())),
        "chars_in": total("chars_in"),
        "chars_out_before_dedup": total("chars_out"),
        "tokens": int(docs.length.sum()),
        "languages": merged("languages"),
        "dedup": {"exact": dups["dedup:exact"], "fuzzy": dups["dedup:fuzzy"],
                  "rate": round((dups["dedup:exact"] + dups["dedup:fuzzy"]) / max(after_filters, 1), 4)},
        "decontam": {"docs": sum(n for k, n in removed.items() if k.startswith("decontam:")) + total("decontam_masked"),
                     "masked_docs": total("decontam_masked"), "ngrams": total("decontam_ngrams"),
                     "items_by_set": merged("decontam_sets"),
                     "distinct_items_by_set": _distinct_items(reports),
                     "matched": [hit for r in reports for hit in r.decontam_hits][:100]},
    }


def mix_sheet(plan: MixPlan, packed: dict[str, int], target_tokens: int) -> dict[str, Any]:
    return {"target_tokens": target_tokens, "tokens": sum(s["tokens"] for s in plan.shares.values()),
            "docs": sum(s["docs"] for s in plan.shares.values()), **packed, "sources": plan.shares, "notes": plan.notes}


def markdown(sheet: dict[str, Any]) -> str:
    lines = ["### Data: datasheet", "", "| source | docs in | docs out | quarantined | tokens | exact dups | near dups | decontam docs | languages |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, s in sheet["sources"].items():
        langs = ", ".join(f"{k} {v}" for k, v in Counter(s["languages"]).most_common(4))
        lines.append(f"| {name} | {s['docs_in']} | {s['docs_out']} | {sum(s['quarantined'].values())} | {s['tokens']} | "
                     f"{s['dedup']['exact']} | {s['dedup']['fuzzy']} | {s['decontam']['docs']} | {langs} |")
    lines += ["", "**Removals by reason**", "", "| source | reason | docs |", "|---|---|---|"]
    lines += [f"| {n} | {r} | {c} |" for n, s in sheet["sources"].items() for r, c in {**s["removed"], **{
        f"quarantine:{k}": v for k, v in s["quarantined"].items()}}.items()]
    hits = [(n, h) for n, s in sheet["sources"].items() for h in s["decontam"]["matched"]]
    lines += ["", f"**Decontamination** ({len(hits)} documents matched eval sets)", ""]
    lines += [f"- {n}: `{h['id']}` matched " + ", ".join(f"{s} items {ids}" for s, ids in h["matched"].items())
              + f" with {h['ngrams']} n-grams, {'removed' if h['removed'] else 'masked'}" for n, h in hits[:20]]
    lines += ["", "**Mixes (achieved vs target token share)**", "", "| mix | source | target | achieved | tokens | docs (unique) | epochs |",
              "|---|---|---|---|---|---|---|"]
    for mix, m in sheet["mixes"].items():
        lines += [f"| {mix} | {src} | {v['target']:.3f} | {v['achieved']:.3f} | {v['tokens']} | {v['docs']} ({v['unique_docs']}) | {v['epochs']} |"
                  for src, v in m["sources"].items()]
        lines.append(f"| {mix} | **total** | | | {m['tokens']} (target {m['target_tokens']}) | {m['docs']} | {m['shards']} shards |")
    tok = sheet["tokenizer"]
    lines += ["", f"Tokenizer: byte-level BPE, vocab {tok['vocab_size']}, trained on {tok['train_chars']} characters."
              if tok.get("source", "trained") == "trained" else
              f"Tokenizer: loaded from `{tok['source']}`, {tok['vocab_size']} ids (chat tokens included)."]
    lines += [f"- {note}" for note in sheet["notes"]]
    return "\n".join(lines) + "\n"


def plots(sheet: dict[str, Any], out_dir: Path) -> list[Path]:
    from olmo3_core.plots import bar_plot

    shares = {f"{mix}/{src}": v["achieved"] for mix, m in sheet["mixes"].items() for src, v in m["sources"].items()}
    removals = Counter()
    for s in sheet["sources"].values():
        removals.update(s["removed"])
        removals.update({f"quarantine:{k}": v for k, v in s["quarantined"].items()})
    return [bar_plot(shares, out_dir / "token_share.png", "Achieved token share per source", "share of mix tokens"),
            bar_plot(dict(removals.most_common(20)) or {"none": 0}, out_dir / "removals.png", "Documents removed by reason", "documents")]
