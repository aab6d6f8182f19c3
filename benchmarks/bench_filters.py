"""Does the default prose chain keep clean prose and remove junk?

Runs the `pipelines.prose` chain of conf/data/default.yaml on
  clean: real, well-formed English prose found offline on any Debian system, none of it the text
         the `builtin_prose` source trains on (that is Python's pydoc topics and docstrings):
         - the license texts in /usr/share/common-licenses (package base-files): legal prose with
           long sentences, the text the C4 sentence rule used to drop;
         - the DESCRIPTION sections of the man pages of essential commands (coreutils, tar, grep,
           sed, findutils, dpkg, apt, ...), rendered with man-db where it is installed;
         paragraphs of at least 15 words that end a sentence, grouped in order into documents of
         at least 120 words (command lines and option tables are not prose and are left out);
  junk:  planted documents from a seeded generator: boilerplate (navigation, cookie and share
         lines), keyword spam, gibberish, code pasted as prose, repeated lines, lorem ipsum, tables
         of numbers and lists of links;
and prints the keep rate on clean text (goal >= 97%), the removal rate on junk (goal >= 95%), the
reasons behind every clean document dropped and every junk document kept, and a digest of the
clean corpus so runs can be compared.

    python benchmarks/bench_filters.py [--junk-per-kind 40] [--show 5]
"""
from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import random
import re
import shutil
import subprocess
import textwrap
from collections import Counter
from pathlib import Path

import yaml

from olmo3_core.data import processors

ROOT = Path(__file__).resolve().parents[1]
LICENSES = Path("/usr/share/common-licenses")
MAN_PAGES = ["ls", "cp", "mv", "rm", "ln", "chmod", "chown", "cat", "sort", "uniq", "cut", "tr", "head", "tail",
             "date", "df", "du", "env", "stat", "touch", "mkdir", "install", "dd", "split", "tee", "wc", "tar", "grep",
             "sed", "find", "xargs", "gzip", "dpkg", "dpkg-deb", "dpkg-query", "apt-get", "apt-cache", "apt", "login",
             "su", "mount", "kill", "passwd", "useradd", "diff", "sh", "bash", "gpg", "ssh", "make", "perl", "git"]
MIN_PARAGRAPH_WORDS, MIN_DOC_WORDS = 15, 120


PROSE_START = re.compile(r"""^(?:[A-Z"'(]|\d+\.\s|\(?[a-z0-9]{1,3}\)\s)""")  # a sentence or an enumerated clause


def _prose_paragraphs(text: str) -> list[str]:
    """Blank-line separated paragraphs that read as prose: at least MIN_PARAGRAPH_WORDS words,
    starting like a sentence (not an option such as `-v, --verbose` or a `key=value` term) and
    ending like one. Their line breaks are kept (the licenses are hard-wrapped, as much plain text
    is); the indentation man adds is not."""
    paragraphs = []
    for block in re.split(r"\n\s*\n", text):
        block = textwrap.dedent(block).strip("\n")
        flowed = " ".join(block.split())
        if (len(flowed.split()) >= MIN_PARAGRAPH_WORDS and PROSE_START.match(flowed)
                and flowed.endswith((".", ".)", ":", ";"))):
            paragraphs.append(block)
    return paragraphs


def _man_description(page: str) -> str:
    """The DESCRIPTION section of a man page as plain text ('' when man-db or the page is missing)."""
    if shutil.which("man") is None:
        return ""
    render = subprocess.run(["man", "-P", "cat", "-E", "ascii", page], capture_output=True, text=True,
                            env={"MANWIDTH": "100000", "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"})
    text = re.sub(r".\x08", "", render.stdout)  # overstrike bold/underline
    match = re.search(r"^DESCRIPTION\n(.*?)(?=^[A-Z][A-Z ]+$)", text, re.MULTILINE | re.DOTALL)
    return match.group(1) if match else ""


def clean_corpus() -> tuple[list[str], dict[str, int]]:
    """Documents of clean prose, in a fixed order, and how many came from each origin."""
    docs, origins = [], Counter()
    licenses = sorted({p.resolve() for p in LICENSES.iterdir() if p.is_file()}) if LICENSES.is_dir() else []  # GPL -> GPL-3 ...
    sources = [(f"license:{p.name}", p.read_text(encoding="utf-8", errors="replace")) for p in licenses]
    sources += [(f"man:{page}", _man_description(page)) for page in MAN_PAGES]
    for origin, text in sources:
        current: list[str] = []
        for paragraph in _prose_paragraphs(text):
            current.append(paragraph)
            if sum(len(p.split()) for p in current) >= MIN_DOC_WORDS:
                docs.append("\n\n".join(current))
                origins[origin.split(":")[0]] += 1
                current = []
    return docs, dict(origins)


def _sentence_words(rng: random.Random, corpus: list[str]) -> list[str]:
    return [w for doc in rng.sample(corpus, min(20, len(corpus))) for w in doc.split()]


def junk_corpus(rng: random.Random, clean: list[str], per_kind: int) -> dict[str, list[str]]:
    """Seeded junk of every kind a prose filter should remove."""
    nav = ["Home", "About us", "Contact", "Products", "Blog", "Careers", "Log in", "Sign up", "Cart", "FAQ", "Support"]
    boiler = ["Accept all cookies", "Subscribe to our newsletter", "Share on Facebook", "Tweet this", "Read more",
              "Copyright 2024 All rights reserved", "Privacy Policy | Terms of Use", "Back to top", "Click here",
              "Follow us on Instagram", "Related posts", "Leave a comment", "Powered by WordPress"]
    spam = ["cheap flights", "best price", "buy now", "discount", "free shipping", "hotel deals", "casino bonus",
            "online pharmacy", "weight loss", "replica watches", "loans fast", "top rated", "sale", "coupon code"]
    cities = ["London", "Paris", "New York", "Berlin", "Tokyo", "Madrid", "Rome", "Dubai", "Sydney", "Toronto"]
    code_sources = [inspect.getsource(fn) for fn in (json.dumps, json.loads, textwrap.wrap, textwrap.dedent,
                    random.Random.shuffle, random.Random.choices, random.Random.sample, Counter.most_common,
                    Counter.update, shutil.copyfile, shutil.rmtree, subprocess.run, re.sub, inspect.getsource)]
    words = _sentence_words(rng, clean)

    def boilerplate():
        lines = [" | ".join(rng.sample(nav, 6))]
        lines += [rng.choice(boiler) for _ in range(rng.randint(15, 40))]
        return "\n".join(lines)

    def keyword_spam():
        return " ".join(f"{rng.choice(spam)} {rng.choice(cities)}" + rng.choice([",", "", " -", " !!"])
                        for _ in range(rng.randint(60, 150)))

    def gibberish():
        letters = "abcdefghijklmnopqrstuvwxyz"
        return " ".join("".join(rng.choice(letters) for _ in range(rng.randint(2, 11))) + rng.choice(["", "", "", "."])
                        for _ in range(rng.randint(120, 300)))

    def code_as_prose():
        return "\n".join(rng.sample(code_sources, 3))

    def repeated_lines():
        line = " ".join(rng.sample(words, 10)) + "."
        other = " ".join(rng.sample(words, 12)) + "."
        return "\n".join([line] * rng.randint(8, 20) + [other] + [line] * rng.randint(3, 8))

    def lorem_ipsum():
        base = ("Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore "
                "et dolore magna aliqua. Ut enim ad minim veniam, quis nostrud exercitation ullamco laboris.")
        return " ".join([base] * rng.randint(3, 8))

    def number_table():
        return "\n".join(" ".join(f"{rng.uniform(0, 1000):.2f}" for _ in range(8)) for _ in range(rng.randint(20, 60)))

    def link_list():
        return "\n".join(f"https://www.{rng.choice(spam).replace(' ', '-')}-{rng.randint(1, 999)}.com/{rng.choice(cities).lower()}"
                         for _ in range(rng.randint(20, 60)))

    kinds = {f.__name__: f for f in (boilerplate, keyword_spam, gibberish, code_as_prose, repeated_lines, lorem_ipsum,
                                      number_table, link_list)}
    return {name: [make() for _ in range(per_kind)] for name, make in kinds.items()}


def prose_chain() -> list[dict]:
    return yaml.safe_load((ROOT / "conf" / "data" / "default.yaml").read_text())["pipelines"]["prose"]


def run_chain(specs: list[dict], text: str) -> str | None:
    return processors.apply(processors.build(specs), {"id": "d", "text": text, "metadata": {}})[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--junk-per-kind", type=int, default=40)
    parser.add_argument("--show", type=int, default=5, help="examples of mistakes to print")
    args = parser.parse_args()
    specs = prose_chain()
    clean, origins = clean_corpus()
    if not clean:
        raise SystemExit("no clean reference prose found (/usr/share/common-licenses and man pages are missing)")
    digest = hashlib.sha256("\n\x00".join(clean).encode()).hexdigest()[:12]
    dropped = [(run_chain(specs, doc), doc) for doc in clean]
    dropped = [(reason, doc) for reason, doc in dropped if reason]
    junk = junk_corpus(random.Random(0), clean, args.junk_per_kind)
    kept_junk = {kind: [doc for doc in docs if run_chain(specs, doc) is None] for kind, docs in junk.items()}
    junk_total = sum(map(len, junk.values()))
    keep_rate = 1 - len(dropped) / len(clean)
    removal_rate = 1 - sum(map(len, kept_junk.values())) / junk_total
    print(f"clean corpus: {len(clean)} documents {origins}, digest {digest}")
    print(f"clean kept:   {keep_rate:.1%} ({len(clean) - len(dropped)}/{len(clean)}; goal >= 97%)")
    print(f"junk removed: {removal_rate:.1%} ({junk_total - sum(map(len, kept_junk.values()))}/{junk_total}; goal >= 95%)")
    print("clean dropped by reason:", dict(Counter(reason for reason, _ in dropped)))
    print("junk kept by kind:", {kind: len(docs) for kind, docs in kept_junk.items() if docs})
    for reason, doc in dropped[: args.show]:
        print(f"--- dropped ({reason}): {doc[:300]!r}")
    for kind, docs in kept_junk.items():
        for doc in docs[: args.show]:
            print(f"--- kept junk ({kind}): {doc[:200]!r}")


if __name__ == "__main__":
    main()
