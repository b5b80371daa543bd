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


# ---- every public name is found by grep where it is defined ---------------------------------------------
# "def relu", "class Axon", "relu = ...": a name in a module's ``__all__`` (or a method of a public class)
# has one line of source that binds it by name. Not a loop over names (``globals().update``, ``setattr``),
# which go-to-definition and grep cannot follow. ``from .x import name`` and ``from .x import *`` pass the
# question on to ``x``.
def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


SOURCE_OF = {_module_name(f): f for f in SOURCES}                       # "axon.kernels.pool" -> its file
_TREES = {}


def _tree(module: str):
    if module not in _TREES:
        _TREES[module] = ast.parse(SOURCE_OF[module].read_text())
    return _TREES[module]


def _top_level(body):
    """The module's statements, those inside top-level ``if``/``try`` blocks included."""
    for node in body:
        yield node
        if isinstance(node, (ast.If, ast.Try)):
            for part in (node.body, getattr(node, "orelse", []), getattr(node, "finalbody", []),
                         *[h.body for h in getattr(node, "handlers", [])]):
                yield from _top_level(part)


def _static_all(module: str):
    """A module's ``__all__`` when it is one literal list, never added to (``__all__ += ...``), else None."""
    found = None
    for node in _top_level(_tree(module).body):
        if isinstance(node, ast.AugAssign) and getattr(node.target, "id", None) == "__all__":
            return None
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets):
            try:
                found = list(ast.literal_eval(node.value))
            except ValueError:
                return None
    return found


def _imported_from(module: str, node: ast.ImportFrom) -> str:
    """The absolute module a ``from ... import`` statement of ``module`` reads."""
    if not node.level:
        return node.module
    package = module.split(".") if SOURCE_OF[module].name == "__init__.py" else module.split(".")[:-1]
    base = package[:len(package) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def definition(module: str, name: str, _seen=None):
    """``(module, line)`` of the statement that binds ``name`` literally (def, class, ``name = ...``), or None.

    Follows ``from .x import name`` and ``from .x import *`` into the axon module they read; a module
    (``from . import tools``) is its own definition; a name from outside axon (numpy) counts as defined.
    """
    seen = _seen if _seen is not None else set()
    if (module, name) in seen or module not in SOURCE_OF:
        return None
    seen.add((module, name))
    stars = []
    for node in _top_level(_tree(module).body):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == name:
            return module, node.lineno
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(n, ast.Name) and n.id == name for t in targets for n in ast.walk(t)):
                return module, node.lineno                                     # (``a, b = ...`` too)
        if isinstance(node, ast.Import):
            if any((a.asname or a.name.split(".")[0]) == name for a in node.names):
                return module, node.lineno
        if isinstance(node, ast.ImportFrom):
            source = _imported_from(module, node)
            for a in node.names:
                if a.name == "*":
                    stars.append(source)
                elif (a.asname or a.name) == name:
                    if f"{source}.{a.name}" in SOURCE_OF:                      # a submodule
                        return f"{source}.{a.name}", 1
                    if source not in SOURCE_OF:                               # numpy, numba, ...
                        return source, node.lineno
                    return definition(source, a.name, seen)
    for source in stars:
        if name in (_static_all(source) or []) or _static_all(source) is None:
            found = definition(source, name, seen)
            if found:
                return found
    return (f"{module}.{name}", 1) if f"{module}.{name}" in SOURCE_OF else None


def _public_names(module: str) -> list:
    """``__all__`` as written, or as it is once imported where the list is computed (``*model.__all__``)."""
    names = _static_all(module)
    if names is not None:
        return names
    try:
        return list(importlib.import_module(module).__all__)
    except Exception as e:                                                    # axon.cuda without a GPU
        pytest.skip(f"{module}: a computed __all__ and the module cannot be imported here ({type(e).__name__})")


WITH_ALL = [m for m in sorted(SOURCE_OF) if any(
    isinstance(n, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in n.targets)
    for n in _top_level(_tree(m).body))]                                      # 100-odd modules


def test_every_module_lists_its_public_names():
    """Explicit ``__all__`` (CONTRIBUTING): every module but the private ones and ``__main__`` scripts."""
    missing = [m for m in sorted(SOURCE_OF) if m not in WITH_ALL and not m.rsplit(".", 1)[-1].startswith("_")]
    assert not missing, f"modules without __all__: {missing}"


@pytest.mark.parametrize("module", WITH_ALL)
def test_every_public_name_is_bound_by_name_where_it_is_defined(module):
    """Each name of ``__all__`` has a ``def NAME`` / ``class NAME`` / ``NAME = ...`` line (grep finds it)."""
    unbound = [name for name in _public_names(module) if name != "__version__" and definition(module, name) is None]
    assert not unbound, f"{module}.__all__ names {unbound}, but no line of source binds them by name"


def _methods_bound(cls_module: str, cls_name: str) -> dict:
    """``{method: (module, line)}``: defs and assignments in the class body, and ``Cls.name = ...`` anywhere."""
    found = {}
    for node in ast.walk(_tree(cls_module)):
        if isinstance(node, ast.ClassDef) and node.name == cls_name:
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    found[item.name] = (cls_module, item.lineno)
                elif isinstance(item, (ast.Assign, ast.AnnAssign)):
                    for t in (item.targets if isinstance(item, ast.Assign) else [item.target]):
                        for n in ast.walk(t):                                  # (``rank, size = 0, 1`` too)
                            if isinstance(n, ast.Name):
                                found[n.id] = (cls_module, item.lineno)
                    if any(getattr(t, "id", None) == "__slots__" for t in getattr(item, "targets", [])):
                        for slot in ast.literal_eval(item.value):              # Tensor's data, grad, ...
                            found[slot] = (cls_module, item.lineno)
    for module in SOURCE_OF:
        for node in _top_level(_tree(module).body):
            if isinstance(node, ast.Assign):
                for t in node.targets:
                    if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id == cls_name:
                        value = node.value
                        if not (isinstance(value, ast.Name) and definition(module, value.id)):
                            found[t.attr] = None                               # bound, but to no named def
                        else:
                            found[t.attr] = (module, node.lineno)
    return found


@pytest.mark.parametrize("cls, make", [
    (axon.model.Axon, lambda: axon.input((None, 3))),
    (axon.Tensor, lambda: axon.Tensor([1.0])),
], ids=["Axon", "Tensor"])
def test_every_public_method_is_bound_by_name(cls, make):
    """``x.dense``, ``x.relu``, ``model.init``, ``t.sum``: each public attribute a line of source names.

    Either a ``def`` (or a slot, a property) in the class body, or ``Axon.relu = relu`` (one line per
    method, next to the builders), where ``relu`` is itself a ``def``.
    """
    bound = _methods_bound(cls.__module__, cls.__name__)
    public = sorted(n for n in dir(make()) if not n.startswith("_"))
    inherited = {n for base in cls.__mro__[1:] for n in vars(base)}          # object's, a dataclass's
    unbound = [n for n in public if n not in inherited and bound.get(n) is None]
    assert not unbound, f"{cls.__name__}'s public attributes {unbound} are bound by no line that names them"
    assert len(public) > (40 if cls is axon.model.Axon else 20)             # the scan sees the methods


def _public_classes() -> list:
    """Every class that a module's ``__all__`` names and an axon module defines (importable here)."""
    classes = {}
    for module in WITH_ALL:
        try:
            m = importlib.import_module(module)
        except Exception:                                                      # axon.cuda without a GPU
            continue
        for name in getattr(m, "__all__", []):
            c = getattr(m, name, None)
            if inspect.isclass(c) and c.__module__ in SOURCE_OF:
                classes[f"{c.__module__}.{c.__qualname__}"] = c
    return [classes[k] for k in sorted(classes)]


def test_every_method_of_every_public_class_is_bound_by_name():
    """The same for every class of the API (optimizer states, strategies, plans, ...): no attribute made in a loop."""
    classes, unbound = _public_classes(), []
    for cls in classes:
        bound = _methods_bound(cls.__module__, cls.__name__)
        inherited = {n for base in cls.__mro__[1:] for n in vars(base)}
        unbound += [f"{cls.__module__}.{cls.__name__}.{n}" for n in dir(cls)
                    if not n.startswith("_") and n not in inherited and bound.get(n) is None]
    assert len(classes) > 40 and not unbound, f"attributes bound by no line that names them: {unbound}"


def test_no_names_are_made_in_a_loop():
    """No ``globals().update``, ``globals()[name] = ``, ``setattr(Cls, name, ...)`` in axon's source."""
    pattern = re.compile(r"globals\(\)\s*(\.update|\[[^]]*\]\s*=)|setattr\(\s*[A-Z]\w*\s*,")
    found = [f"{p.relative_to(REPO)}:{i}" for p in SOURCES
             for i, line in enumerate(p.read_text().split("\n"), 1) if pattern.search(line)]
    assert not found, "names made in a loop (grep cannot find their definition):\n" + "\n".join(found)


def test_the_definition_check_catches_a_generated_name(tmp_path, monkeypatch):
    """What the checks above say of a module whose names come from a loop, and of a class given setattr'd methods."""
    module = "axon._test_generated"
    monkeypatch.setitem(SOURCE_OF, module, tmp_path / "gen.py")
    (tmp_path / "gen.py").write_text('__all__ = ["relu", "tanh", "exp"]\nexp = 1\n'
                                     'for n in ("relu", "tanh"):\n    globals()[n] = n\n')
    _TREES.pop(module, None)
    try:
        assert [n for n in _static_all(module) if definition(module, n) is None] == ["relu", "tanh"]
        assert definition("axon.model", "relu")[0] == "axon.model.builders"    # through two star imports
        assert definition("axon", "Tensor")[0] == "axon.autograd.tensor"
    finally:
        _TREES.pop(module, None)
