"""Taggers/filters: each rule flags what it should, with its attributes, and leaves good text alone."""
from __future__ import annotations

import random
from pathlib import Path

import pytest
import yaml

from olmo3_core.data import processors
from olmo3_core.data.synthetic import english_doc

GOOD = english_doc(random.Random(0), 15)


def run(specs, text, **meta):
    doc = {"id": meta.pop("id", "d"), "text": text, "metadata": meta}
    attrs, reason = processors.apply(processors.build(specs), doc)
    return doc, attrs, reason


def test_good_prose_passes_every_prose_rule():
    specs = [{"name": n} for n in ("clean", "length", "langid", "gopher_quality", "gopher_repetition", "pii")]
    specs.append({"name": "c4", "filter_curly_bracket": False})
    doc, attrs, reason = run(specs, GOOD)
    assert reason is None and attrs["langid"]["lang"] == "en" and doc["metadata"]["language"] == "en"


@pytest.mark.parametrize("text, reason", [
    ("too short to matter", "gopher_quality:too_few_words"),
    ("supercalifragilisticexpialidocious " * 60, "gopher_quality:mean_word_length"),
    ("\n".join(f"- the wonderful item number {i} shipped quickly" for i in range(40)), "gopher_quality:bullet_lines"),
    (" ".join(["12345 67890 !!! ???"] * 30) + " the and to of", "gopher_quality:alpha_words"),
    (" ".join(w.lower() for w in GOOD.split() if w.lower() not in processors.STOP_WORDS), "gopher_quality:stop_words"),
])
def test_gopher_quality_rules(text, reason):
    assert run([{"name": "gopher_quality"}], text)[2] == reason


def test_gopher_repetition_rules():
    assert run([{"name": "gopher_repetition"}], "\n".join(["the same line again and again"] * 10 + [GOOD]))[2] == "gopher_repetition:dup_lines"
    paras = "\n\n".join([english_doc(random.Random(1), 5)] * 3)
    assert run([{"name": "gopher_repetition"}], paras)[2] == "gopher_repetition:dup_paragraphs"


def test_c4_drops_lines_then_rejects_lorem_ipsum_and_braces():
    text = GOOD + "\nClick here\nEnable javascript to continue.\nRead our privacy policy here."
    doc, attrs, reason = run([{"name": "c4"}], text)
    assert reason is None and attrs["c4"]["lines_dropped"] == 3 and "javascript" not in doc["text"]
    assert run([{"name": "c4"}], GOOD + " Lorem ipsum dolor sit amet.")[2] == "c4:lorem_ipsum"
    assert run([{"name": "c4"}], GOOD + " Then {x} happened.")[2] == "c4:curly_bracket"
    assert run([{"name": "c4"}], "One sentence here.")[2] == "c4:too_few_sentences"


def test_langid_flags_other_languages():
    _, attrs, reason = run([{"name": "langid"}], "Der schnelle braune Fuchs springt über den faulen Hund und läuft in den Wald.")
    assert reason == "langid:other_language" and attrs["langid"]["lang"] == "de"
    assert run([{"name": "langid", "languages": ["de"]}], "Der schnelle braune Fuchs springt über den faulen Hund.")[2] is None


def test_pii_masks_and_counts():
    doc, attrs, reason = run([{"name": "pii"}], "Mail a.b@example.com, call (555) 123-4567 or +1 555.123.4567, ping 10.0.0.1; v3.11.7.1 stays.")
    assert reason is None and attrs["pii"] == {"email": 1, "phone": 2, "ip": 1}
    assert doc["text"] == ("Mail |||EMAIL_ADDRESS|||, call |||PHONE_NUMBER||| or |||PHONE_NUMBER|||, "
                           "ping |||IP_ADDRESS|||; v3.11.7.1 stays.")
    assert run([{"name": "pii", "max_matches": 1}], "x@y.org z@w.org")[2] == "pii:too_many"


def test_code_checks_replace_prose_rules():
    good = "def f(x):\n    return x + 1\n"
    assert run([{"name": "code"}], good, language="python")[2] is None
    assert run([{"name": "code"}], "def f(:\n    return\n", language="python")[2] == "code:syntax_error"
    assert run([{"name": "code"}], "x = 1\n" + "y" * 2000, language="python")[2] == "code:max_line_length"
    assert run([{"name": "code"}], "{}[]();:" * 50 + "\n" + "()\n" * 10)[2] == "code:alnum_fraction"


def test_clean_normalizes_and_length_bounds():
    doc, attrs, _ = run([{"name": "clean"}], "a\r\nb  \n\n\n\nc\x00d")
    assert doc["text"] == "a\nb\n\ncd" and attrs["clean"]["chars_removed"] == 6
    assert run([{"name": "length", "max_chars": 3}], "abcd")[2] == "length:too_long"


def test_unknown_processor_or_parameter_is_named():
    with pytest.raises(ValueError, match="unknown processor 'nope'"):
        processors.build([{"name": "nope"}])
    with pytest.raises(ValueError, match="unknown parameters \\['min_wrds'\\]"):
        processors.build([{"name": "length", "min_wrds": 3}])


@pytest.mark.parametrize("text, count", [
    ("It ends here.) Next one. (See above.) Then \"quoted.\" And curly.” Last!", 6),
    ("Pi is 3.14, e.g., roughly; version 2.0.1 is out", 0),
    ("Why? Because! Well...", 3),
    ("Items [see 2.] follow. Done.'", 3),
])
def test_sentence_ends_inside_closing_quotes_and_brackets(text, count):
    assert len(processors.SENTENCE_END.findall(text)) == count


LEGAL = """\
Subject to the terms and conditions of this License, each Contributor hereby grants to You a
perpetual, worldwide, non-exclusive, no-charge, royalty-free, irrevocable copyright license to
reproduce, prepare Derivative Works of, publicly display, publicly perform, sublicense, and
distribute the Work and such Derivative Works in Source or Object form, provided that You meet the
conditions stated in Section 4 (including the requirement to retain all copyright, patent,
trademark, and attribution notices from the Source form of the Work, excluding those notices that
do not pertain to any part of the Derivative Works.)

If You institute patent litigation against any entity (including a cross-claim or counterclaim in
a lawsuit) alleging that the Work or a Contribution incorporated within the Work constitutes direct
or contributory patent infringement, then any patent licenses granted to You under this License for
that Work shall terminate as of the date such litigation is filed."""


def _default_chain(name: str) -> list[dict]:
    root = Path(__file__).resolve().parents[3]
    return yaml.safe_load((root / "conf" / "data" / "default.yaml").read_text())["pipelines"][name]


def test_default_prose_chain_keeps_a_long_sentence_legal_paragraph():
    doc, attrs, reason = run(_default_chain("prose"), LEGAL)
    assert reason is None, (reason, attrs)
    assert attrs["c4"]["sentences"] == 2


def test_code_pasted_as_prose_is_removed_and_wrapped_prose_is_not():
    code = "\n".join(["import os", "def walk(top, depth=0):", "    for name in os.listdir(top):",
                      "        path = os.path.join(top, name)", "        if os.path.isdir(path):",
                      "            walk(path, depth + 1)", "    return depth"] * 3)
    assert run([{"name": "code_lines"}], GOOD + "\n" + code)[2] == "code_lines:too_many"
    doc, attrs, reason = run([{"name": "code_lines"}], LEGAL)
    assert reason is None and attrs["code_lines"]["code_line_ratio"] == 0
