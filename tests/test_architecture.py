"""The package's shape, as ARCHITECTURE.md describes it, checked by walking its imports with
``ast`` (no module is imported): data flows one way, and each layer imports only below it."""

from __future__ import annotations

import ast
import inspect
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import ckptmigrate

PACKAGE = Path(ckptmigrate.__file__).parent
FOREIGN_ML = ("tensorflow", "keras", "tf_keras")


@dataclass(frozen=True)
class Import:
    importer: str  # dotted module name
    imported: str  # dotted module name (a package's __init__ is the package)
    names: tuple[str, ...]  # names taken from it (from-imports)
    line: int


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def _type_checking_lines(tree: ast.Module) -> set[int]:
    """Lines of ``if TYPE_CHECKING:`` blocks: imported for annotations, never at run time."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def imports_of(name: str, path: Path) -> Iterator[Import]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = _type_checking_lines(tree)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    known = modules()
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skipped:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(name, alias.name, (), node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            names = tuple(a.name for a in node.names)
            # `from . import dtypes` imports the module ckptmigrate.dtypes
            for imported in names:
                if f"{target}.{imported}" in known:
                    yield Import(name, f"{target}.{imported}", (), node.lineno)
            rest = tuple(n for n in names if f"{target}.{n}" not in known)
            if rest or not names:
                yield Import(name, target, rest, node.lineno)


def all_imports() -> list[Import]:
    return [i for name, path in sorted(modules().items()) for i in imports_of(name, path)]


def internal(imported: str) -> bool:
    return imported == "ckptmigrate" or imported.startswith("ckptmigrate.")


def _display_hook_lines(name: str, path: Path) -> set[tuple[str, int]]:
    """(module, line) of the lines inside Jupyter display hooks (``def _repr_html_``):
    called long after every module is imported, they may import the layer that renders
    their object (compare.Report -> html_report), and nothing else may."""
    lines: set[tuple[str, int]] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.FunctionDef) and node.name == "_repr_html_":
            lines.update((name, n) for n in range(node.lineno, (node.end_lineno or 0) + 1))
    return lines


def test_no_import_cycles() -> None:
    graph: dict[str, set[str]] = {name: set() for name in modules()}
    hooks = {line for name, path in modules().items() for line in _display_hook_lines(name, path)}
    for i in all_imports():
        if (i.importer, i.line) in hooks:
            continue
        if internal(i.imported) and i.imported in graph and i.imported != i.importer:
            graph[i.importer].add(i.imported)
    # Tarjan's strongly connected components: any component of two or more is a cycle.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert cycles == []


def test_no_private_name_is_imported_across_modules() -> None:
    crossing = [
        f"{i.importer}:{i.line} takes {name} from {i.imported}"
        for i in all_imports()
        if internal(i.imported)
        for name in i.names
        if name.startswith("_") and not name.startswith("__")
    ]
    assert crossing == []


def test_only_the_gate_imports_tensorflow_or_keras() -> None:
    direct = [
        f"{i.importer}:{i.line} imports {i.imported}"
        for i in all_imports()
        if i.imported.split(".")[0] in FOREIGN_ML and i.importer != "ckptmigrate._tf"
    ]
    assert direct == []


def test_formats_stay_below_everything_else() -> None:
    """formats/ reads and writes files: it may use errors, dtypes, fs and other formats
    modules; V1 checkpoints are the one format read through TensorFlow (via the gate)."""
    allowed = {"ckptmigrate.errors", "ckptmigrate.dtypes", "ckptmigrate.fs"}
    wrong = [
        f"{i.importer}:{i.line} imports {i.imported}"
        for i in all_imports()
        if i.importer.startswith("ckptmigrate.formats")
        and internal(i.imported)
        and not i.imported.startswith("ckptmigrate.formats")
        and i.imported not in allowed
        and not (i.importer == "ckptmigrate.formats.v1" and i.imported == "ckptmigrate._tf")
    ]
    assert wrong == []


def test_nothing_imports_the_cli_or_the_package_root() -> None:
    wrong = [
        f"{i.importer}:{i.line} imports {i.imported}"
        for i in all_imports()
        if (i.imported == "ckptmigrate.cli" and i.importer != "ckptmigrate.__main__")
        or (i.imported == "ckptmigrate" and i.importer != "ckptmigrate")
    ]
    assert wrong == []


@pytest.mark.parametrize("name", sorted(n for n in ckptmigrate.__all__ if n[0].islower()))
def test_public_functions_document_args_returns_and_raises(name: str) -> None:
    if name.startswith("__"):
        pytest.skip("not a function")
    function = getattr(ckptmigrate, name)
    doc = inspect.getdoc(function) or ""
    parameters = [p for p in inspect.signature(function).parameters if p not in ("self",)]
    missing = [s for s in ("Args:", "Returns:", "Raises:") if s not in doc]
    if not parameters:
        missing = [s for s in missing if s != "Args:"]
    assert missing == [], f"{name}'s docstring lacks {', '.join(missing)}"


def _strings(node: ast.AST) -> Iterator[str]:
    for child in ast.walk(node):
        if isinstance(child, ast.Constant) and isinstance(child.value, str):
            yield child.value


def _error_calls(tree: ast.Module) -> Iterator[ast.Call]:
    """Calls that build an error (``...Error(...)``) or carry a ``hint=``."""
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        if name.endswith("Error") or any(k.arg == "hint" for k in node.keywords):
            yield node


def test_library_errors_name_options_not_cli_flags() -> None:
    """An API caller who passed overwrite= must not read "pass --force": library messages
    write [[option]] tokens, which str(error) spells as the API's keywords and the CLI as
    its flags; both tables know every token used."""
    import re

    from ckptmigrate.cli import CLI_FLAGS
    from ckptmigrate.errors import API_SPELLING

    flag = re.compile(r"(?<![\w-])--[a-z]")
    token = re.compile(r"\[\[([a-z_]+)\]\]")
    flags_named: list[str] = []
    tokens: set[str] = set()
    for name, path in sorted(modules().items()):
        if name == "ckptmigrate.cli":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for call in _error_calls(tree):
            for text in _strings(call):
                if flag.search(text):
                    flags_named.append(f"{name}:{call.lineno}: {text!r}")
        if name != "ckptmigrate.errors":  # it explains the tokens in its docstrings
            for text in _strings(tree):
                tokens.update(token.findall(text))
    assert flags_named == []
    assert tokens, "no option tokens found: the scan is broken"
    assert sorted(tokens - set(API_SPELLING)) == []
    assert sorted(tokens - set(CLI_FLAGS)) == []


def test_a_verification_verdict_spells_options_for_its_reader() -> None:
    """A library message carried into --verify's verdict keeps its [[option]] tokens until
    it is shown: the API reads its keyword, the command line its flag."""
    from ckptmigrate.cli import CLI_FLAGS
    from ckptmigrate.verification import Verification

    failed = Verification(False, 0, error="convert without [[verify]]")
    assert failed.verdict.endswith("convert without verify=True")
    assert failed.render(CLI_FLAGS).endswith("convert without --verify")
