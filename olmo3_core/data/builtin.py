"""The built-in sample corpus, generated offline from what every Python install carries.

Three named sources, each yielding Dolma documents: prose (the bundled reference docs in
`pydoc_data.topics` plus the docstrings of the stdlib modules), code (the stdlib `Lib/*.py` files)
and math (procedural arithmetic worksheets with worked solutions). They let the whole flow run
with no downloads while exercising the same curation path as user files.
"""
from __future__ import annotations

import ast
import random
import sys
import sysconfig
from pathlib import Path
from typing import Iterator

from olmo3_core.data.config import SourceConfig
from olmo3_core.data.documents import make_doc
from olmo3_core.problems.procedural import math as procedural_math

PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"


def stdlib_files() -> list[Path]:
    return sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))


def _sample(items: list, max_docs: int | None, seed: int, salt: str) -> list:
    """A seeded subset (kept in input order, so shards read like the source)."""
    if max_docs is None or max_docs >= len(items):
        return items
    keep = set(random.Random(f"{seed}-{salt}").sample(range(len(items)), max_docs))
    return [item for i, item in enumerate(items) if i in keep]


def _docstrings(path: Path) -> str:
    """A module's docstring followed by its public classes' and functions' docstrings."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (SyntaxError, UnicodeDecodeError):
        return ""
    parts = [ast.get_docstring(tree) or ""]
    for node in tree.body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef)) and not node.name.startswith("_"):
            doc = ast.get_docstring(node)
            if doc:
                parts.append(f"{node.name}\n\n{doc}")
    return "\n\n".join(p for p in parts if p)


def prose(name: str, src: SourceConfig, seed: int) -> tuple[Iterator[dict], list[str]]:
    import pydoc_data.topics as topics

    entries = [(f"pydoc:{t}", None) for t in sorted(topics.topics)] + [(f"docstrings:{p.stem}", p) for p in stdlib_files()]
    chosen = _sample(entries, src.max_docs, seed, name)
    meta = {"python": PYTHON, "license": "PSF-2.0"}

    def docs() -> Iterator[dict]:
        for doc_id, path in chosen:
            text = _docstrings(path) if path else topics.topics[doc_id.split(":", 1)[1]]
            yield make_doc(doc_id, text, name, None, dict(meta))

    return docs(), [topics.__file__] + [str(p) for _, p in chosen if p]


def code(name: str, src: SourceConfig, seed: int) -> tuple[Iterator[dict], list[str]]:
    chosen = _sample(stdlib_files(), src.max_docs, seed, name)

    def docs() -> Iterator[dict]:
        for path in chosen:
            meta = {"language": "python", "path": f"Lib/{path.name}", "python": PYTHON, "license": "PSF-2.0"}
            yield make_doc(f"stdlib:{path.name}", path.read_text(encoding="utf-8", errors="replace"), name, None, meta)

    return docs(), [str(p) for p in chosen]


def math(name: str, src: SourceConfig, seed: int) -> tuple[Iterator[dict], list[str]]:
    """Worksheets of `problems_per_doc` (min, max) train-split problems, so lengths vary."""
    num_docs = src.max_docs or 100
    low, high = src.problems_per_doc
    rng = random.Random(f"{seed}-{name}-sizes")
    sizes = [rng.randint(low, high) for _ in range(num_docs)]
    problems = iter(procedural_math.generate(sum(sizes), seed, split="train"))

    def docs() -> Iterator[dict]:
        for i, size in enumerate(sizes):
            sheet = [next(problems) for _ in range(size)]
            text = "\n\n".join(f"Problem: {p.question}\nSolution: {p.solution}" for p in sheet)
            yield make_doc(f"math:{seed}:{i:06d}", text, name, None, {"problems": size, "generator": "procedural_math"})

    return docs(), [procedural_math.__file__]


GENERATORS = {"builtin_prose": prose, "builtin_code": code, "builtin_math": math}
