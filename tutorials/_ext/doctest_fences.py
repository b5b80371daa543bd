"""A griffe extension for the API reference: show docstring examples as code.

Our docstrings are plain text with doctest examples (``>>> x = ...`` followed by the output).
Markdown would read the ``>>>`` lines as nested block quotes, so this extension wraps every run of
doctest lines in a ```` ```pycon ```` fence before mkdocstrings renders the docstring. A run starts at
a ``>>>`` line and ends at the first blank line, as in the doctest module.

Loaded by ``mkdocs.yml`` (``plugins: mkdocstrings: handlers: python: options: extensions``).
"""
from __future__ import annotations

import griffe

__all__ = ["DoctestFences", "fence_doctests"]


def fence_doctests(text: str) -> str:
    """Wrap each run of doctest lines (``>>>`` up to the next blank line) in a pycon fence.

    >>> fence_doctests("Add one.\\n\\n>>> 1 + 1\\n2").split("\\n")
    ['Add one.', '', '```pycon', '>>> 1 + 1', '2', '```']
    """
    out, indent, in_fence = [], None, False
    for line in text.split("\n"):
        stripped = line.lstrip()
        if stripped.startswith("```"):
            in_fence = not in_fence                            # leave existing fences alone
        if indent is None and not in_fence and stripped.startswith(">>>"):
            indent = line[: len(line) - len(stripped)]         # the run's indentation, kept for the fence
            out.append(f"{indent}```pycon")
        elif indent is not None and not stripped:
            out.append(f"{indent}```")
            indent = None
        out.append(line)
    if indent is not None:
        out.append(f"{indent}```")
    return "\n".join(out)


class DoctestFences(griffe.Extension):
    """Rewrite every object's docstring with ``fence_doctests`` once griffe has loaded it."""

    def on_object(self, *, obj, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = fence_doctests(obj.docstring.value)
