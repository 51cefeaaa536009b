"""MkDocs hook: the README, benchmarks/RESULTS.md and the reproduction report as site pages.

The README is cut at its headings into pages (Getting started, the usage sections, the
learner, results, layout); RESULTS.md and benchmarks/reproduce/report.md (with its figures)
become pages of their own. Links are rewritten for the site: a link to a file that has a
page goes to that page, a link to any other file of the repository becomes its path in
code, since the site does not hold the sources. Nothing is copied into docs/.
"""

from __future__ import annotations

import re
from pathlib import Path

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[1]
VIEW = ROOT / "build" / "docs-view"
"""The package laid out as Python imports it (symlinks), for mkdocstrings: pyproject maps
the top-level folders into ``twinpass`` with setuptools' package-dir, which static tools do
not read."""


def _make_view() -> None:
    import shutil

    import tomllib

    with open(ROOT / "pyproject.toml", "rb") as f:
        mapping = tomllib.load(f)["tool"]["setuptools"]["package-dir"]
    shutil.rmtree(VIEW, ignore_errors=True)
    top = VIEW / "twinpass"
    top.mkdir(parents=True)
    for item in (ROOT / "twinpass").iterdir():
        if item.suffix in (".py", ".typed"):
            (top / item.name).symlink_to(item)
    for name, folder in mapping.items():
        (top / name.split(".", 1)[1]).symlink_to(ROOT / folder, target_is_directory=True)


_make_view()  # at import: before mkdocstrings collects anything

#: README section (its heading, without the leading #'s) -> page.
SECTIONS: dict[str, str | None] = {
    "Quick start": "index.md",
    "Usage": None,  # its sub-sections are pages of their own
    "Streaming: `twinpass stream`": "streaming.md",
    "Tuning a stream's settings: `twinpass tune`": "streaming.md",
    "The paper's tasks: `twinpass train`": "training.md",
    "Reproducing the paper: `twinpass reproduce`": "training.md",
    "On a microcontroller: `twinpass deploy`, `twinpass device`, `twinpass hil`": "devices.md",
    "From Python": "python.md",
    "What twinpass does differently from the paper, and why": "learner.md",
    "Results": "results.md",
    "Layout": "layout.md",
}

#: A repository path -> the page that shows it.
PAGES = {
    "README.md": "index.md",
    "docs/design.md": "design.md",
    "docs/protocol.md": "protocol.md",
    "benchmarks/RESULTS.md": "benchmarks.md",
    "benchmarks/reproduce/report.md": "reproduce.md",
}

_LINK = re.compile(r"(!?)\[([^\]]*)\]\(([^)\s]+)\)")


def _relink(text: str, base: str, anchors: dict[str, str]) -> str:
    """Rewrite the links of a markdown file that lives at repository path ``base``."""

    def fix(m: re.Match[str]) -> str:
        bang, label, target = m.groups()
        if re.match(r"[a-z]+:", target) or bang:
            return m.group(0)
        path, _, anchor = target.partition("#")
        if not path:  # an anchor of the same file: the page that section went to
            page = anchors.get(anchor)
            return f"[{label}]({page})" if page else m.group(0)
        repo_path = str((Path(base).parent / path).as_posix()).lstrip("./")
        repo_path = str(Path(repo_path))
        page = PAGES.get(repo_path)
        if page:
            return f"[{label}]({page}{'#' + anchor if anchor else ''})"
        return f"{label} (`{repo_path}` in the source tree)"

    return _LINK.sub(fix, text)


def _slug(heading: str) -> str:
    s = re.sub(r"[^\w\s-]", "", heading.lower()).strip()
    return re.sub(r"[\s]+", "-", s)


def _readme_pages() -> dict[str, str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    pages: dict[str, list[str]] = {}
    anchors: dict[str, str] = {}
    page = "index.md"
    for line in text.splitlines():
        m = re.match(r"(#{2,3}) (.*)", line)
        if m and m.group(2) in SECTIONS:
            target = SECTIONS[m.group(2)]
            if target is None:
                continue
            page = target
            anchors[_slug(m.group(2))] = page
            if not pages.get(page):  # the first heading of a page is its title
                line = "# " + m.group(2)
        pages.setdefault(page, []).append(line)
    out = {}
    for name, lines in pages.items():
        body = "\n".join(lines)
        # The markers CI reads the commands from are for the README only.
        body = re.sub(r"<!--\s*/?(main|test)-command\s*-->\n?", "", body)
        out[name] = _relink(body, "README.md", anchors)
    return out


def on_files(files: Files, config: dict) -> Files:
    generated = _readme_pages()
    results = (ROOT / "benchmarks" / "RESULTS.md").read_text(encoding="utf-8")
    generated["benchmarks.md"] = _relink(results, "benchmarks/RESULTS.md", {})
    report_dir = ROOT / "benchmarks" / "reproduce"
    report = (report_dir / "report.md").read_text(encoding="utf-8")
    generated["reproduce.md"] = _relink(report, "benchmarks/reproduce/report.md", {})
    for name, content in generated.items():
        files.append(File.generated(config, name, content=content))
    for png in sorted(report_dir.glob("*.png")):
        files.append(File.generated(config, png.name, content=png.read_bytes()))
    return files
