"""The installed package list must cover every package folder, or a non-editable install loses code."""
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_folder_is_declared():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    mapping = project["package-dir"]
    declared = set(project["packages"])
    found = set()
    for init in ROOT.glob("*/**/__init__.py"):
        rel = init.parent.relative_to(ROOT).parts
        if rel[0] in ("tests", "build") or rel[0].startswith("."):
            continue
        top = next((name for name, folder in mapping.items() if folder == rel[0]), rel[0])
        found.add(".".join((top, *rel[1:])))
    assert found == declared
