"""The figures of ``README.md`` and ``docs/*.md`` against the results files they cite.

A figure cites its source as a Markdown link whose text is the number and whose target is a
results file and the figure's key path (keys joined by ``.``, under ``figures``); from ``docs/``
the link starts with ``../`` so that it opens from the page::

    [0.887](benchmarks/results/demo.json#map_50)
    [142](../benchmarks/results/demo.json#steps_s.train) s

The key path is a URL fragment: a key with spaces is written percent-encoded
(``#Fast%20R-CNN.value``). The number must be the recorded value rounded to as many decimals as
the README shows.
``check`` lists every figure of one page that differs, cites a missing file or key, or cites a
quick run; ``pages`` names the pages to check.
"""

import json
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

FIGURE_LINK = re.compile(r"\[(-?[0-9]+(?:\.[0-9]+)?)\]\(((?:\.\./)*)(benchmarks/results/[\w.-]+\.json)#([^)\s]+)\)")


@dataclass(frozen=True)
class Figure:
    """One cited figure: the text shown, the results file and the key path inside its ``figures``."""

    text: str
    path: str
    key: str
    up: str = ""  # the link's leading ``../``s: from the page's folder to the repo


def cited_figures(markdown: str) -> list[Figure]:
    """Every ``[number]([../]benchmarks/results/<file>.json#<key.path>)`` in ``markdown``, in order."""
    return [Figure(text, path, key, up) for text, up, path, key in FIGURE_LINK.findall(markdown)]


def pages(repo: Path) -> list[Path]:
    """The pages whose figures are checked: ``README.md`` and every ``docs/*.md``."""
    return [repo / "README.md", *sorted((repo / "docs").glob("*.md"))]


def _lookup(figures: dict, key: str) -> object:
    value: object = figures
    for part in unquote(key).split("."):
        if not isinstance(value, dict) or part not in value:
            raise KeyError(part)
        value = value[part]
    return value


def check(readme: Path, repo: Path) -> list[str]:
    """Problems with the figures ``readme`` cites (files relative to ``repo``); empty when all agree."""
    problems = []
    up = "../" * len(readme.resolve().parent.relative_to(repo.resolve()).parts)
    for figure in cited_figures(readme.read_text()):
        if figure.up != up:
            problems.append(f"{figure.text}: the link to {figure.path} starts {figure.up!r}, not {up!r}: it does not open from {readme.name}")
            continue
        source = repo / figure.path
        if not source.is_file():
            problems.append(f"{figure.text}: {figure.path} does not exist")
            continue
        result = json.loads(source.read_text())
        if result.get("quick"):
            problems.append(f"{figure.text}: {figure.path} is a --quick run, not a figure")
            continue
        try:
            value = _lookup(result["figures"], figure.key)
        except KeyError as missing:
            problems.append(f"{figure.text}: {figure.path} has no figure {figure.key} (no key {missing})")
            continue
        decimals = len(figure.text.partition(".")[2])
        if not isinstance(value, (int, float)) or f"{value:.{decimals}f}" != figure.text:
            problems.append(f"{figure.text}: {figure.path}#{figure.key} records {value!r}")
    return problems
