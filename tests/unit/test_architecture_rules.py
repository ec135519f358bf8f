"""The layout's rules that import-linter cannot see (docs/design.md, "Architecture").

Pure: these tests read files and parse them with ``ast``; nothing of modelyard is imported.

- Size: no module under ``src/modelyard`` exceeds 500 lines; ``yard.py`` has 350 or fewer.
- One home for tag keys: outside ``core/names.py`` no string literal spells a ``modelyard.``
  tag key (docs/design.md, "Tag contract").
- No reach-through: no ``yard._x``, ``self._yard._x``, ``self.yard._x`` or ``facade._x``.
- No citation, in ``src`` or ``README.md``, of a repository file that does not exist
  (``docs/*.md``, ``DESIGN.md``), nor of a section ``docs/design.md`` does not have.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path


def _repo_root() -> Path:
    here = Path(__file__).resolve()
    return next(p for p in here.parents if (p / "pyproject.toml").is_file())


ROOT = _repo_root()
SRC = ROOT / "src" / "modelyard"
NAMES = SRC / "core" / "names.py"
DESIGN = ROOT / "docs" / "design.md"

MAX_MODULE_LINES = 500
MAX_FACADE_LINES = 350


def _modules() -> list[Path]:
    return sorted(p for p in SRC.rglob("*.py") if "__pycache__" not in p.parts)


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


# -- size ----------------------------------------------------------------------------------
def _lines(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").splitlines())


def test_no_module_exceeds_500_lines() -> None:
    big = [f"{_rel(p)} ({n} lines)" for p in _modules() if (n := _lines(p)) > MAX_MODULE_LINES]
    assert big == [], f"modules over {MAX_MODULE_LINES} lines (split them by job): {big}"


def test_the_facade_stays_thin() -> None:
    lines = _lines(SRC / "yard.py")
    assert lines <= MAX_FACADE_LINES, (
        f"src/modelyard/yard.py has {lines} lines (at most {MAX_FACADE_LINES}): the facade "
        "delegates; verbs belong in their packages or on a sub-facade")


# -- one home for tag keys -----------------------------------------------------------------
# A dotted name in modelyard's namespace inside a string: "modelyard.stage", "modelyard.lineage."
# (the constant part of an f-string), "modelyard.cli.serve" (with ":app_factory" after it).
# Not after a word character, '.', '@', '/' or '-': "demo@modelyard.invalid" is a host name.
_DOTTED = re.compile(r"(?<![\w.@/\-])modelyard(?:\.[A-Za-z_]\w*)+\.?")
# What a name ending in one of these is: a file (modelyard.toml), not a tag key.
_FILE_SUFFIXES = frozenset({"toml", "json", "yaml", "yml", "prom", "db", "lock", "txt", "md",
                            "py", "cfg", "ini", "log"})


def tag_keys(names_source: str) -> tuple[frozenset[str], frozenset[str]]:
    """(keys, prefixes) that ``core/names.py`` defines: every module-level string constant in
    the ``modelyard.`` namespace; those ending in '.' are prefixes (``modelyard.lineage.``).
    The bare namespace (``PREFIX = "modelyard."``) is not a tag key."""
    keys: set[str] = set()
    prefixes: set[str] = set()
    for node in ast.parse(names_source).body:
        value = node.value if isinstance(node, (ast.Assign, ast.AnnAssign)) else None
        if not (isinstance(value, ast.Constant) and isinstance(value.value, str)):
            continue
        text = value.value
        if not text.startswith("modelyard.") or text == "modelyard.":
            continue
        (prefixes if text.endswith(".") else keys).add(text)
    return frozenset(keys), frozenset(prefixes)


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the docstring constants (prose about keys is not a spelling of one)."""
    found: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if (body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                    and isinstance(body[0].value.value, str)):
                found.add(id(body[0].value))
    return found


def _logger_names(tree: ast.AST) -> set[int]:
    """ids of the string constants given to ``getLogger`` (``logging.getLogger("modelyard.x")``)."""
    found: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and node.args:
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name == "getLogger" and isinstance(node.args[0], ast.Constant):
                found.add(id(node.args[0]))
    return found


def _is_module_path(dotted: str, src: Path) -> bool:
    """``modelyard.cli.serve`` names src/modelyard/cli/serve.py (or a package)."""
    parts = dotted.rstrip(".").split(".")[1:]
    target = src.joinpath(*parts)
    return target.with_suffix(".py").is_file() or (target / "__init__.py").is_file()


def tag_key_spellings(source: str, keys: frozenset[str], prefixes: frozenset[str],
                      src: Path) -> Iterator[tuple[int, str, str]]:
    """(line, name, why) for each string literal of ``source`` that spells a tag key.

    A dotted ``modelyard.`` name in a string constant (docstrings aside) is a tag key when it is
    one ``core/names.py`` defines or starts with one of its prefixes; any other such name is
    taken for a tag key too unless it is a module path (``"modelyard.cli.serve:app"``), a
    logger name (the argument of ``getLogger``) or a file name (``modelyard.toml``)."""
    tree = ast.parse(source)
    skip = _docstrings(tree)
    loggers = _logger_names(tree)
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Constant) and isinstance(node.value, str)) or id(node) in skip:
            continue
        for match in _DOTTED.finditer(node.value):
            name = match.group(0)
            bare = name.rstrip(".")
            if name in keys or bare in keys or any(
                    name.startswith(p) or f"{bare}." == p for p in prefixes):
                yield node.lineno, name, "defined in core/names.py: import it"
            elif id(node) in loggers or _is_module_path(name, src) or (
                    bare.rsplit(".", 1)[-1] in _FILE_SUFFIXES):
                continue
            else:
                yield node.lineno, name, "a tag key core/names.py does not define"


def test_the_tag_key_rule_tells_keys_from_modules_loggers_and_files() -> None:
    keys, prefixes = tag_keys('PREFIX = "modelyard."\nT_STAGE = "modelyard.stage"\n'
                              'T_LINEAGE = "modelyard.lineage."\nBUMPS = ("major",)\n')
    assert (keys, prefixes) == ({"modelyard.stage"}, {"modelyard.lineage."})
    source = '''"""Docstring about ``modelyard.stage``: prose, not a spelling."""
import logging
log = logging.getLogger("modelyard.reader")
APP = "modelyard.cli.serve:app_factory"
CONFIG = "modelyard.toml"
MAIL = "user.email=demo@modelyard.invalid"
STAGE = "modelyard.stage"
def f(key):
    """``modelyard.stage`` again."""
    return {f"modelyard.lineage.{key}": 1, "modelyard.drill": 2, f"modelyard.cli.{key}": 3}
'''
    found = sorted((line, name) for line, name, _ in
                   tag_key_spellings(source, keys, prefixes, SRC))
    assert found == [(7, "modelyard.stage"), (10, "modelyard.drill"), (10, "modelyard.lineage.")]


def test_tag_keys_are_spelled_only_in_core_names() -> None:
    keys, prefixes = tag_keys(NAMES.read_text(encoding="utf-8"))
    assert "modelyard.semver" in keys and "modelyard.lineage." in prefixes
    offenders = [
        f"{_rel(path)}:{line}: {name!r} ({why})"
        for path in _modules() if path != NAMES
        for line, name, why in sorted(tag_key_spellings(path.read_text(encoding="utf-8"), keys,
                                                        prefixes, SRC))
    ]
    assert offenders == [], "tag keys spelled outside core/names.py:\n" + "\n".join(offenders)


# -- no reach-through into private attributes ----------------------------------------------
# The names a facade goes by where other objects hold it (the before-stop hook's
# ``\b(yard|self\._yard|facade)\._[a-z]``, and ``self.yard._x`` too).
_FACADE_NAMES = frozenset({"yard", "_yard", "facade"})


def private_reaches(source: str) -> Iterator[tuple[int, str]]:
    """(line, expression) for each ``<facade>._private`` attribute read or written."""
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Attribute) or not node.attr.startswith("_"):
            continue
        if node.attr.startswith("__") and node.attr.endswith("__"):
            continue
        holder = node.value
        if (isinstance(holder, ast.Name) and holder.id in _FACADE_NAMES) or (
                isinstance(holder, ast.Attribute) and holder.attr in _FACADE_NAMES):
            yield node.lineno, ast.unparse(node)


def test_the_reach_through_rule() -> None:
    source = ("def f(yard, self, facade, other):\n"
              "    return (yard._loader, self._yard._audit, self.yard._audit, facade._x,\n"
              "            yard.__class__, yard.load, self._loader, other._x)\n")
    assert sorted(expr for _, expr in private_reaches(source)) == [
        "facade._x", "self._yard._audit", "self.yard._audit", "yard._loader"]


def test_no_private_attribute_is_read_through_the_facade() -> None:
    offenders = [f"{_rel(path)}:{line}: {expr}" for path in _modules()
                 for line, expr in sorted(private_reaches(path.read_text(encoding="utf-8")))]
    assert offenders == [], ("private attributes reached through the facade (make what is "
                             "needed public, or hand it in):\n" + "\n".join(offenders))


# -- citations -----------------------------------------------------------------------------
# As the before-stop hook reads them: any path ending in DESIGN.md, and docs/*.md.
_CITED_FILE = re.compile(r"[A-Za-z_/.-]*DESIGN\.md|docs/[A-Za-z_./-]+\.md")
# docs/design.md, "Vault layout" (the section may follow on the next line, after a '#').
_CITED_SECTION = re.compile(r'docs/design\.md,[\s#]*"([^"\n]+)"')


def _citing_files() -> list[Path]:
    files = [ROOT / "README.md", ROOT / "pyproject.toml"]
    files += sorted(p for p in SRC.rglob("*") if p.is_file() and "__pycache__" not in p.parts
                    and p.suffix not in (".pyc", ".db", ".pkl"))
    return files


def _in_repository(cited: str) -> bool:
    """The cited path exists inside the repository (``../shared/DESIGN.md`` does not count)."""
    target = (ROOT / cited).resolve()
    return target.is_relative_to(ROOT) and target.exists()


def _headings(markdown: str) -> set[str]:
    return {line.lstrip("#").strip() for line in markdown.splitlines()
            if re.match(r"^#{1,6} ", line)}


def test_the_citation_rules() -> None:
    assert _CITED_FILE.findall("see `../shared/DESIGN.md` and docs/design.md.") == [
        "../shared/DESIGN.md", "docs/design.md"]
    assert not _in_repository("../shared/DESIGN.md")
    assert _in_repository("docs/design.md")
    text = '(docs/design.md,\n# "Architecture") and docs/design.md, "Vault layout".'
    assert _CITED_SECTION.findall(text) == ["Architecture", "Vault layout"]


def test_cited_files_exist() -> None:
    missing = []
    for path in _citing_files():
        text = path.read_text(encoding="utf-8", errors="replace")
        for number, line in enumerate(text.splitlines(), 1):
            missing += [f"{_rel(path)}:{number}: {cited}"
                        for cited in _CITED_FILE.findall(line) if not _in_repository(cited)]
    assert missing == [], "files cited but not in the repository:\n" + "\n".join(missing)


def test_cited_design_sections_exist() -> None:
    headings = _headings(DESIGN.read_text(encoding="utf-8"))
    missing = []
    for path in _citing_files():
        text = path.read_text(encoding="utf-8", errors="replace")
        for match in _CITED_SECTION.finditer(text):
            if match.group(1) not in headings:
                number = text.count("\n", 0, match.start()) + 1
                missing.append(f"{_rel(path)}:{number}: {match.group(1)!r}")
    assert missing == [], ("sections of docs/design.md cited but not among its headings:\n"
                           + "\n".join(missing))
