"""The README's module map matches the tree under ``src/modelyard``.

The map is the table under ``## Module map``: one row per package, the package's path in
backticks in the first cell (``modelyard/``, ``modelyard/backend/lean/``), its modules as
backticked ``*.py`` names in the last cell (glosses in between are free text). A row stands for
its package's ``__init__.py``. A package is a folder holding ``__init__.py``; a folder without
one (``templates/``) is package data, and nothing under it is a module.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest


def _repo_root() -> Path:
    here = Path(__file__).resolve()
    return next(p for p in here.parents if (p / "pyproject.toml").is_file())


ROOT = _repo_root()
SRC = ROOT / "src" / "modelyard"
HEADING = "## Module map"

_PACKAGE_CELL = re.compile(r"^`modelyard/((?:[A-Za-z_]\w*/)*)`$")
_MODULE = re.compile(r"`([A-Za-z_]\w*\.py)`")


def parse_map(readme: str) -> dict[str, list[str]]:
    """``{package: [module, ...]}`` from the README's map; the root package is ``""``,
    others ``"backend/lean"``. Raises ValueError on a missing section, a malformed or
    duplicated row."""
    start = readme.find(f"\n{HEADING}\n")
    if start < 0:
        raise ValueError(f"README.md has no {HEADING!r} section")
    body = readme[start + len(HEADING) + 2:]
    end = body.find("\n## ")
    section = body if end < 0 else body[:end]
    packages: dict[str, list[str]] = {}
    for line in section.splitlines():
        if not line.startswith("|") or set(line) <= set("|-: "):
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if cells[0] == "package":  # the header row
            continue
        match = _PACKAGE_CELL.match(cells[0])
        if match is None or len(cells) < 2:
            raise ValueError(f"malformed module-map row: {line[:80]!r}")
        package = match.group(1).rstrip("/")
        if package in packages:
            raise ValueError(f"package {package or 'modelyard'!r} has two rows")
        packages[package] = _MODULE.findall(cells[-1])
    if not packages:
        raise ValueError(f"the {HEADING!r} section has no table rows")
    return packages


def tree(src: Path) -> dict[str, list[str]]:
    """``{package: [module, ...]}`` of the packages under ``src`` (``__init__.py`` left out)."""
    packages: dict[str, list[str]] = {}

    def walk(folder: Path) -> None:
        package = folder.relative_to(src).as_posix()
        packages["" if package == "." else package] = sorted(
            p.name for p in folder.glob("*.py") if p.name != "__init__.py")
        for child in sorted(folder.iterdir()):
            if child.is_dir() and (child / "__init__.py").is_file():
                walk(child)

    walk(src)
    return packages


def _show(package: str) -> str:
    return f"modelyard/{package}/" if package else "modelyard/"


def test_the_map_parser_reads_rows_and_refuses_duplicates() -> None:
    text = ("intro\n\n## Module map\n\nwords\n\n| package | job | modules |\n|---|---|---|\n"
            "| `modelyard/` | root | `yard.py` (`Yard`), `errors.py` |\n"
            "| `modelyard/backend/lean/` | lean, not `x.py` here | `rest.py`, `base.py` |\n"
            "\n## Next\n| `modelyard/other/` | ignored | `a.py` |\n")
    assert parse_map(text) == {"": ["yard.py", "errors.py"], "backend/lean": ["rest.py", "base.py"]}
    with pytest.raises(ValueError, match="two rows"):
        parse_map(text.replace("`modelyard/backend/lean/`", "`modelyard/`"))
    with pytest.raises(ValueError, match="malformed"):
        parse_map(text.replace("`modelyard/backend/lean/`", "backend/lean"))
    with pytest.raises(ValueError, match="no '## Module map'"):
        parse_map("# nothing here\n")


def test_every_package_has_a_row_and_every_row_a_package() -> None:
    listed = parse_map((ROOT / "README.md").read_text(encoding="utf-8"))
    actual = tree(SRC)
    missing = sorted(_show(p) for p in set(actual) - set(listed))
    extra = sorted(_show(p) for p in set(listed) - set(actual))
    assert missing == [], f"packages with no row in README.md's module map: {missing}"
    assert extra == [], f"README.md's module map lists packages that do not exist: {extra}"


def test_every_module_is_listed_and_nothing_else() -> None:
    listed = parse_map((ROOT / "README.md").read_text(encoding="utf-8"))
    actual = tree(SRC)
    missing, extra, twice = [], [], []
    for package in sorted(set(listed) & set(actual)):
        names = listed[package]
        missing += [_show(package) + m for m in actual[package] if m not in names]
        extra += [_show(package) + m for m in names if m not in actual[package]]
        twice += [_show(package) + m for m in sorted(set(names)) if names.count(m) > 1]
    assert missing == [], f"modules missing from README.md's module map: {missing}"
    assert extra == [], f"README.md's module map lists modules that do not exist: {extra}"
    assert twice == [], f"README.md's module map lists these modules twice: {twice}"
