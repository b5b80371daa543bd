"""The documentation is tested: every tutorial chapter and the README run, and the site builds.

How a Markdown file is run (one pytest test per file):

- Every fenced block tagged ``python`` runs, in order, in one namespace per file (a chapter reads
  top to bottom, so a later block may use what an earlier one defined), inside a fresh temporary
  working directory, with ``AXON_TUTORIAL_QUICK=1`` in the environment. A chapter with a long run
  reads that variable visibly and trains on a small subset::

      QUICK = os.environ.get("AXON_TUTORIAL_QUICK") == "1"

- A block fenced as ```` ```python {.no-run} ```` is shown but not run (an excerpt of library code).
- A block fenced as ```` ```python {.device} ```` needs a CUDA device (chapter 7): the ordinary run
  skips it; ``tests/test_cuda.py`` runs the chapter's blocks, these included, in a process of their own
  on the device, or on numba's simulator (``NUMBA_ENABLE_CUDASIM=1``, as CI does), and compares the
  device blocks' output blocks: ``python tests/test_docs.py --run-device tutorials/07_gpu.md``. The ``{.no-run}`` attribute is how the site's Markdown (attr_list +
  superfences) and GitHub both still render the block as Python; ``python no-run`` would break the
  page, so any other text after ``python`` is reported as an error.
- A block fenced as ```` ```text {.output} ```` is the printed output of the ``python`` block just
  before it: the test fails when the code prints something else. To refresh them after a deliberate
  change, run ``python tests/test_docs.py --update-outputs tutorials/01_autodiff.md`` (a chapter with
  device blocks refreshes theirs in a second process, on numba's simulator).

Errors point at the Markdown file and line, because each block is compiled with the file's name and
its own line numbers.
"""
from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TUTORIALS = ROOT / "tutorials"
DOCUMENTS = sorted(TUTORIALS.glob("*.md")) + ([ROOT / "README.md"] if (ROOT / "README.md").exists() else [])

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<ticks>`{3,}|~{3,})\s*(?P<info>.*?)\s*$")
_INFO = re.compile(r"^(?P<lang>[\w+-]*)\s*(?:\{(?P<attrs>[^}]*)\})?$")


@dataclass
class Block:
    """One fenced code block: where it starts (1-based line of its first code line) and what it holds."""
    lang: str
    classes: set
    line: int
    code: str
    expected: str | None = None          # the text of the ```text {.output} block that follows, if any
    expected_span: tuple | None = None   # that block's first code line and closing fence, 0-based indices

    @property
    def runs(self) -> bool:
        return self.lang == "python" and "no-run" not in self.classes

    @property
    def device(self) -> bool:
        """Whether the block needs a CUDA device (``{.device}``): run only by ``run(doc, device=True)``."""
        return self.runs and "device" in self.classes


@dataclass
class Document:
    path: Path
    lines: list
    blocks: list = field(default_factory=list)


def parse(path: Path) -> Document:
    """Split a Markdown file into its fenced blocks; attach each output block to the code before it.

    Raises ValueError naming the file and line for a malformed info string, an unclosed fence, or an
    output block that does not follow a runnable ``python`` block.
    """
    lines = path.read_text(encoding="utf-8").split("\n")
    doc, i = Document(path, lines), 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if m is None:
            i += 1
            continue
        indent, ticks, info = m["indent"], m["ticks"], m["info"]
        start = i + 1
        end = next((j for j in range(start, len(lines))
                    if lines[j].strip().startswith(ticks) and not lines[j].strip().strip(ticks[0])), None)
        if end is None:
            raise ValueError(f"{path}:{i + 1}: code fence {ticks} is never closed")
        info_m = _INFO.match(info)
        if info_m is None:
            raise ValueError(f"{path}:{i + 1}: cannot read the code fence info {info!r}; write "
                             f"```python, ```python {{.no-run}} or ```text {{.output}}")
        body = [line[len(indent):] if line.startswith(indent) else line.lstrip() for line in lines[start:end]]
        classes = [c[1:] for c in (info_m["attrs"] or "").split() if c.startswith(".")]
        lang = info_m["lang"] or (classes[0] if classes else "")     # ```{.python .no-run} works too
        block = Block(lang, set(classes), start + 1, "\n".join(body))
        if "output" in classes:
            prev = doc.blocks[-1] if doc.blocks else None
            if prev is None or not prev.runs or prev.expected is not None:
                raise ValueError(f"{path}:{i + 1}: an output block must follow a runnable ```python block")
            prev.expected, prev.expected_span = block.code, (start, end)
        else:
            doc.blocks.append(block)
        i = end + 1
    return doc


def run(doc: Document, device: bool = False) -> list:
    """Run the document's ``python`` blocks in one namespace; return ``[(block, printed_text)]``.

    ``{.device}`` blocks run only with ``device=True`` (in a process where axon's CUDA backend loads).
    The caller chooses the working directory and environment.
    """
    namespace = {"__name__": "__main__"}
    results = []
    for block in doc.blocks:
        if not block.runs or (block.device and not device):
            continue
        source = "\n" * (block.line - 1) + block.code           # so tracebacks give the Markdown line
        code = compile(source, str(doc.path), "exec")
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            exec(code, namespace)
        results.append((block, printed.getvalue()))
    return results


def _normal(text: str) -> str:
    """Output compared line by line, ignoring trailing spaces and trailing blank lines."""
    return "\n".join(line.rstrip() for line in text.rstrip().split("\n"))


@contextlib.contextmanager
def _isolated(tmp_path: Path):
    """A temporary working directory, quick mode on, headless plots.

    Afterwards the primitives that the document itself registered (their VJP or forward was defined
    in the document, whose module is ``__main__``) leave the table again; primitives registered by library
    modules that the document happened to import first stay.
    """
    from axon.autograd import ops

    saved_primitives = dict(ops.PRIMITIVES)
    old_cwd, old_env = os.getcwd(), dict(os.environ)
    os.chdir(tmp_path)
    os.environ["AXON_TUTORIAL_QUICK"] = "1"
    os.environ.setdefault("MPLBACKEND", "Agg")
    try:
        yield
    finally:
        os.chdir(old_cwd)
        os.environ.clear()
        os.environ.update(old_env)
        for name, prim in list(ops.PRIMITIVES.items()):
            made_by = (prim.vjp, prim.forwards.get("cpu"))                # vjp=None: its forward says
            if any(getattr(f, "__module__", None) == "__main__" for f in made_by):
                if name in saved_primitives:
                    ops.PRIMITIVES[name] = saved_primitives[name]
                else:
                    del ops.PRIMITIVES[name]
        if "matplotlib.pyplot" in sys.modules:
            sys.modules["matplotlib.pyplot"].close("all")


def mismatches(doc: Document, results: list) -> list:
    """One message for each block whose printed text differs from its output block."""
    return [f"{doc.path}:{block.line}: the block printed\n{printed}\nbut its output block "
            f"(line {block.expected_span[0] + 1}) shows\n{block.expected}\n"
            for block, printed in results
            if block.expected is not None and _normal(printed) != _normal(block.expected)]


# ---- the tests --------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_document_runs(path, tmp_path):
    """Every python block of the file runs, and prints what its output block shows."""
    doc = parse(path)
    with _isolated(tmp_path):
        results = run(doc)
    wrong = mismatches(doc, results)
    if wrong:
        pytest.fail("\n".join(wrong) + f"\nIf the change is intended, refresh the output blocks: "
                    f"python tests/test_docs.py --update-outputs {path.relative_to(ROOT)}")


def test_tutorials_exist_in_nav():
    """Every chapter file is in mkdocs.yml's nav, and the chapters are numbered in reading order."""
    chapters = sorted(p.name for p in TUTORIALS.glob("[0-9][0-9]_*.md"))
    assert chapters, "no tutorial chapters found in tutorials/"
    assert [int(name[:2]) for name in chapters] == list(range(1, len(chapters) + 1)), chapters
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    missing = [name for name in chapters if name not in nav]
    assert not missing, f"chapters missing from mkdocs.yml nav: {missing}"


CODE_LINE_LIMIT = 100     # characters: tutorials/css/tutorial.css sizes the site's code column for this


def test_code_lines_fit_the_site():
    """Every line of the chapters' code blocks fits the site's code column (no sideways scrolling).

    Output blocks and ```text transcripts are left out: the program prints their lines, and the site
    wraps them (tutorial.css).
    """
    too_long = [f"{path.name}:{block.line + i}: {len(line)} characters"
                for path in sorted(TUTORIALS.glob("*.md")) for block in parse(path).blocks
                if block.lang != "text"
                for i, line in enumerate(block.code.split("\n")) if len(line) > CODE_LINE_LIMIT]
    assert not too_long, (f"code lines longer than {CODE_LINE_LIMIT} characters (wrap them):\n"
                          + "\n".join(too_long))


def test_the_site_code_column_holds_the_line_limit_at_1280_px():
    """tutorial.css's sizes, with mkdocs-material's own, leave room for CODE_LINE_LIMIT characters at 1280 px.

    Material: root font 125% (20 px) below 1600 px, text 0.8rem, content margins 1.2rem a side, code
    padding 1.1765em a side; a monospace glyph is 0.602em wide (DejaVu Sans Mono, Menlo, SF Mono; Consolas
    is narrower). The window keeps 17 px for a scrollbar.
    """
    css = (TUTORIALS / "css" / "tutorial.css").read_text(encoding="utf-8")
    rem = 20.0
    grid = float(re.search(r"\.md-grid\s*\{\s*max-width:\s*([\d.]+)rem", css)[1]) * rem
    sidebars = [float(w) * rem for w in re.findall(r"\.md-sidebar--(?:primary|secondary)\s*\{\s*width:\s*([\d.]+)rem",
                                                   css)]
    code_em = float(re.search(r"\.md-typeset pre > code\s*\{\s*font-size:\s*([\d.]+)em", css)[1])
    font = 0.8 * rem * code_em                                                 # px: 12.8
    column = min(grid, 1280 - 17) - sum(sidebars) - 2 * 1.2 * rem - 2 * 1.1765 * font
    assert len(sidebars) == 2 and column / (0.602 * font) >= CODE_LINE_LIMIT, (column, font)


_PRIVATE_ATTRIBUTE = re.compile(r"\.(_[a-z]\w*)")
_IMPORT = re.compile(r"^\s*(?:from\s+\S+\s+)?import\s+\(?([^#\n]*)", re.MULTILINE)
_NAMEDTUPLE_API = {"_fields", "_asdict", "_replace", "_make"}    # public, underscored against field clashes


def private_names(code: str) -> list:
    """The private attributes (``t._node``) and private imports (``import _plan``) that ``code`` uses."""
    imported = [name.split(" as ")[0].strip() for m in _IMPORT.finditer(code) for name in m[1].split(",")]
    found = [n.rsplit(".", 1)[-1] for n in imported if n.rsplit(".", 1)[-1].startswith("_")]
    found += [n for n in _PRIVATE_ATTRIBUTE.findall(code) if n not in _NAMEDTUPLE_API]
    return found


def test_chapters_use_no_private_names():
    """The code a reader runs uses public names only (``{.no-run}`` excerpts of library code may not)."""
    found = [f"{path.name}:{block.line}: {', '.join(private_names(block.code))}"
             for path in sorted(TUTORIALS.glob("*.md")) for block in parse(path).blocks
             if block.runs and private_names(block.code)]
    assert not found, "tutorial code reaches into private names:\n" + "\n".join(found)
    assert private_names("from axon.model.run import _plan, init\nnode = y._node\n"
                         "state._replace(step=1)\nfrom axon.kernels import _common") == ["_plan", "_common", "_node"]


def test_parse_rules(tmp_path):
    """The collector's own rules: what runs, what is skipped, what is compared, what is an error."""
    md = tmp_path / "t.md"
    md.write_text("# t\n\n```python\nx = 1\nprint(x + 1)\n```\n\n```text {.output}\n2\n```\n\n"
                  "```python {.no-run}\nraise SystemExit\n```\n\n```bash\nexit 1\n```\n\n"
                  "```{.python .no-run}\nraise SystemExit\n```\n\n```python {.device}\nprint(x)\n```\n")
    doc = parse(md)
    assert [(b.lang, b.runs, b.device, b.line) for b in doc.blocks] == [
        ("python", True, False, 4), ("python", False, False, 13), ("bash", False, False, 17),
        ("python", False, False, 21), ("python", True, True, 25)]
    assert doc.blocks[0].expected == "2"
    with _isolated(tmp_path):
        results = run(doc)
    assert results == [(doc.blocks[0], "2\n")] and mismatches(doc, results) == []
    with _isolated(tmp_path):
        assert run(doc, device=True) == [(doc.blocks[0], "2\n"), (doc.blocks[4], "1\n")]
    doc.blocks[0].expected = "3"
    assert len(mismatches(doc, results)) == 1

    for bad, message in [("```python no-run\nx\n```\n", "cannot read"),
                         ("```python\nx = 1\n", "never closed"),
                         ("text\n\n```text {.output}\n1\n```\n", "must follow")]:
        md.write_text(bad)
        with pytest.raises(ValueError, match=message):
            parse(md)

    md.write_text("```python\nfrom axon.autograd import primitive\n"
                  "primitive('doc_only_op', abs, lambda dy, y, x: (dy,))\n```\n")
    from axon.autograd import ops
    with _isolated(tmp_path):
        run(parse(md))
        assert "doc_only_op" in ops.PRIMITIVES
    assert "doc_only_op" not in ops.PRIMITIVES

    md.write_text("```python\nx = 1\n\n\ny = undefined_name\n```\n")
    with _isolated(tmp_path), pytest.raises(NameError) as info:
        run(parse(md))
    assert info.traceback[-1].lineno + 1 == 5 and str(info.traceback[-1].path) == str(md)


def test_doctest_fences():
    """The API reference's griffe extension fences ``>>>`` examples and leaves everything else alone."""
    pytest.importorskip("griffe")
    sys.path.insert(0, str(TUTORIALS / "_ext"))
    try:
        from doctest_fences import fence_doctests
    finally:
        sys.path.remove(str(TUTORIALS / "_ext"))
    text = "What.\n\n>>> 1 + 1\n2\n\nMore:\n\n    >>> x = 3\n    >>> x\n    3\n\n```python\n>>> kept\n```"
    assert fence_doctests(text) == ("What.\n\n```pycon\n>>> 1 + 1\n2\n```\n\nMore:\n\n"
                                    "    ```pycon\n    >>> x = 3\n    >>> x\n    3\n    ```\n\n"
                                    "```python\n>>> kept\n```")
    assert fence_doctests("No examples here.") == "No examples here."


def test_make_figures(tmp_path):
    """scripts/make_figures.py draws every figure it knows (into a temporary folder here)."""
    pytest.importorskip("matplotlib")
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import make_figures
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    with _isolated(tmp_path):
        written = make_figures.main(["--out", str(tmp_path)])
    assert written and all(p.exists() and p.stat().st_size > 1000 for p in written), written
    committed = {p.name for p in (TUTORIALS / "img").glob("*.png")}
    assert {p.name for p in written} <= committed, "run scripts/make_figures.py and commit tutorials/img/"


def test_mkdocs_build_strict(tmp_path):
    """``mkdocs build --strict`` succeeds without a single warning (skipped where mkdocs is missing)."""
    for module in ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python"):
        pytest.importorskip(module)
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet",
                           "-f", str(ROOT / "mkdocs.yml"), "-d", str(tmp_path / "site")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{log}"
    assert "WARNING" not in log, f"mkdocs build printed warnings:\n{log}"
    assert (tmp_path / "site" / "01_autodiff" / "index.html").exists()


# ---- the device blocks: run in a process of their own -------------------------------------------------------
def run_on_device(path: Path) -> list:
    """Run every ``python`` block of ``path``, ``{.device}`` ones too; ``[(block, printed)]`` of the device blocks.

    Here axon's CUDA backend must load (a GPU, or ``NUMBA_ENABLE_CUDASIM=1`` set before Python started).
    On the simulator its device arrays are made strict first (``tests/cuda_strict.py``: what a real GPU's
    arrays lack fails), and Python switches threads often (the simulator's threads meet at barriers).
    The other blocks run too, as the chapter's context, but their output is the CPU run's to check
    (``test_document_runs``): the backend's own error, say, differs on a device.
    """
    import tempfile

    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        sys.path.insert(0, str(ROOT / "tests"))
        import cuda_strict
        cuda_strict.install()
        sys.setswitchinterval(1e-5)
    import axon.backend
    axon.backend.backend("cuda")                                # one clear error when the device cannot start
    doc = parse(path)
    with tempfile.TemporaryDirectory() as tmp, _isolated(Path(tmp)):
        results = run(doc, device=True)
    return [(block, printed) for block, printed in results if block.device]


def _device_main(names: list) -> int:
    """``--run-device FILE.md ...``: run each file's blocks on the device; 1 when an output block differs."""
    failed = 0
    for name in names:
        doc = parse(Path(name).resolve())
        results = run_on_device(doc.path)
        wrong = mismatches(doc, results)
        print(f"{name}: {len(results)} device block(s) ran, {len(wrong)} printed something else")
        for message in wrong:
            print(message)
        failed += bool(wrong)
    return 1 if failed else 0


# ---- refreshing output blocks -------------------------------------------------------------------------
def update_outputs(path: Path, device: bool = False) -> int:
    """Run ``path`` and rewrite each ```text {.output} block with what its code printed; return how many changed.

    ``device=False``: the blocks the ordinary run checks; ``device=True`` (in a process where the CUDA
    backend loads): the ``{.device}`` blocks' outputs only.
    """
    import tempfile

    doc = parse(path)
    if device:
        results = run_on_device(path)
    else:
        with tempfile.TemporaryDirectory() as tmp, _isolated(Path(tmp)):
            results = run(doc)
    lines, changed = list(doc.lines), 0
    for block, printed in reversed(results):                    # bottom-up, so earlier spans stay valid
        if block.expected is None or _normal(printed) == _normal(block.expected):
            continue
        first, last = block.expected_span
        indent = re.match(r"[ \t]*", lines[first - 1])[0]
        lines[first:last] = [indent + line if line else line for line in _normal(printed).split("\n")]
        changed += 1
    path.write_text("\n".join(lines), encoding="utf-8")
    return changed


def _update_device_outputs(path: Path) -> int:
    """The device blocks' outputs of ``path`` refreshed in a second process, on numba's simulator."""
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    proc = subprocess.run([sys.executable, __file__, "--update-device-outputs", str(path)], env=env,
                          capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"{path}: the device blocks failed on the simulator:\n{proc.stdout}{proc.stderr}")
    return int(proc.stdout.split()[-1])


if __name__ == "__main__":
    usage = ("usage: python tests/test_docs.py --update-outputs FILE.md [FILE.md ...]\n"
             "       python tests/test_docs.py --run-device FILE.md [FILE.md ...]")
    if len(sys.argv) < 3 or sys.argv[1] not in ("--update-outputs", "--run-device", "--update-device-outputs"):
        sys.exit(usage)
    if sys.argv[1] == "--run-device":
        sys.exit(_device_main(sys.argv[2:]))
    if sys.argv[1] == "--update-device-outputs":                # (the second process of --update-outputs)
        print(update_outputs(Path(sys.argv[2]).resolve(), device=True))
        sys.exit(0)
    for name in sys.argv[2:]:
        path = Path(name).resolve()
        changed = update_outputs(path)
        if any(block.device for block in parse(path).blocks):
            changed += _update_device_outputs(path)
        print(f"{name}: {changed} output block(s) updated")
