"""Names a reader types: no function hides its module, every documented ``axon.a.b`` resolves, the source compiles cleanly.

A function named like its module (``axon.jit`` over ``axon/jit.py``) makes ``axon.jit.check`` an
AttributeError although ``from axon.jit import check`` works: the module is reachable by import only.
Axon keeps one rule instead: ``pkg.name`` is the submodule whenever ``pkg/name.py`` exists, so such a
function's module has another name (``axon.jit`` is in ``axon/tracing.py``, as ``jax.jit`` is a function).
"""
import ast
import importlib
import inspect
import pkgutil
import re
import warnings
from pathlib import Path

import pytest

import axon

ROOT = Path(axon.__file__).parent                       # axon/
REPO = ROOT.parent
DOCS = sorted([*REPO.glob("tutorials/*.md"), *REPO.glob("tutorials/api/*.md"), REPO / "README.md",
               REPO / "CONTRIBUTING.md"])
SOURCES = sorted(ROOT.rglob("*.py"))


def _module_file(parts: list) -> Path | None:
    """axon/a/b.py or axon/a/b/__init__.py for ["a", "b"], if it is in this checkout (never another install)."""
    base = ROOT.joinpath(*parts)
    for f in (base.with_suffix(".py"), base / "__init__.py"):
        if f.is_file():
            return f
    return None


def _bound_by(node) -> set:
    """The names one top-level statement binds: def, class, assignment, import (``import *`` binds none we can see)."""
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return {node.name}
    if isinstance(node, (ast.Assign, ast.AnnAssign)):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        return {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        return {(a.asname or a.name).split(".")[0] for a in node.names if a.name != "*"}
    return set()


def _names_bound_in(path: Path) -> set:
    """The top-level names a module's source binds, read without importing it."""
    return set().union(*(_bound_by(node) for node in ast.parse(path.read_text()).body))


PACKAGES = sorted(".".join(("axon",) + f.parent.relative_to(ROOT).parts) for f in ROOT.rglob("__init__.py"))


@pytest.mark.parametrize("package", PACKAGES)
def test_no_name_in_a_package_hides_a_submodule(package):
    """``pkg.child`` is the module ``pkg/child.py``: nothing the package defines or imports takes its name."""
    directory = ROOT.joinpath(*package.split(".")[1:])
    children = {m.name for m in pkgutil.iter_modules([str(directory)])}
    hiding = set()
    for node in ast.parse((directory / "__init__.py").read_text()).body:      # by its source
        if not (isinstance(node, ast.ImportFrom) and node.level == 1 and node.module is None):
            hiding |= _bound_by(node) & children        # (``from . import child`` binds the module itself)
    assert not hiding, f"{package} binds {sorted(hiding)} over its submodule(s) of the same name"
    try:
        module = importlib.import_module(package)
    except Exception as e:                              # axon.cuda without a GPU, axon.onnx without onnx
        pytest.skip(f"{package} cannot be imported here ({type(e).__name__}); its source was checked")
    for child in sorted(children):                      # and once imported (names from ``import *`` too)
        value = vars(module).get(child)                 # (vars: no lazy import of axon.cuda here)
        assert value is None or inspect.ismodule(value), \
            f"{package}.{child} is a {type(value).__name__} that hides the module {package}.{child}"


def test_the_renamed_modules_are_reached_by_attribute():
    """The functions keep their names; their modules are reachable as attributes under their own."""
    assert callable(axon.jit) and axon.tracing.check and axon.tracing.jit is axon.jit
    assert callable(axon.training.step) and axon.training.steps.step is axon.training.step
    assert callable(axon.model.summary) and axon.model.summaries.summary is axon.model.summary
    assert callable(axon.layers.conv) and axon.layers.convolution.conv is axon.layers.conv
    assert callable(axon.layers.dropout) and axon.layers.dropouts.dropout is axon.layers.dropout


DOTTED = re.compile(r"(?<![\w.])axon(?:\.[A-Za-z_]\w*)+")


def _documented_names() -> list:
    return sorted({m.group(0) for path in DOCS for m in DOTTED.finditer(path.read_text())})


def _resolve(name: str):
    """``axon.a.b.c`` by getattr from ``import axon``, after importing the longest prefix that is a module of
    this checkout (``axon.examples`` is not imported by ``import axon``). A module that cannot load here
    (axon.cuda without a GPU) is checked on its source instead: each name must be a module file or bound in it."""
    parts = name.split(".")[1:]
    modules = [i for i in range(len(parts), 0, -1) if _module_file(parts[:i]) is not None]
    if modules:
        try:
            importlib.import_module(".".join(["axon", *parts[:modules[0]]]))
        except Exception:
            path, rest = _module_file(parts[:modules[0]]), parts[modules[0]:]
            assert not rest[1:] and (not rest or rest[0] in _names_bound_in(path)), f"{name} is not in {path}"
            return
    obj = axon
    for i, part in enumerate(parts):
        assert hasattr(obj, part), f"{'.'.join(['axon', *parts[:i]])} has no attribute {part!r}"
        obj = getattr(obj, part)


def test_every_documented_dotted_name_resolves():
    """Every ``axon.a.b`` in the chapters, the API pages, README and CONTRIBUTING is there to be used."""
    names = _documented_names()
    assert len(names) > 100 and "axon.tracing.check" in names        # the scan finds the names
    failures = []
    for name in names:
        try:
            _resolve(name)
        except AssertionError as e:
            failures.append(str(e))
    assert not failures, "documented names that do not resolve:\n" + "\n".join(failures)


def test_the_name_check_catches_a_function_over_its_module():
    """What the check above would have said of ``axon.jit.check`` while ``axon.jit`` hid ``axon/jit.py``."""
    with pytest.raises(AssertionError, match="axon.jit has no attribute 'check'"):
        _resolve("axon.jit.check")
    with pytest.raises(AssertionError, match="has no attribute"):
        _resolve("axon.layers.no_such_layer")


@pytest.mark.parametrize("path", SOURCES, ids=[str(p.relative_to(REPO)) for p in SOURCES])
def test_every_module_compiles_without_warnings(path):
    """No invalid escape (``"\\ s"`` in a docstring) or other SyntaxWarning: ``python -W error`` imports axon."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        compile(path.read_text(), str(path), "exec")


def test_the_compile_check_catches_an_invalid_escape():
    with warnings.catch_warnings(), pytest.raises((SyntaxError, SyntaxWarning, DeprecationWarning)):
        warnings.simplefilter("error")
        compile('"""``None``\\ s left out."""', "<docstring>", "exec")
