"""Every docs/... file the code and the docs cite exists (the project carries its own method notes)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CITED = re.compile(r"docs/[A-Za-z0-9_./-]+\.md")
SOURCES = ["edgezo", "models", "export", "targets", "host", "docs", "tests"]


def _citations():
    for folder in SOURCES:
        for path in (ROOT / folder).rglob("*"):
            if path.suffix in {".py", ".md", ".toml"} and path.is_file():
                for match in CITED.finditer(path.read_text(errors="replace")):
                    yield path.relative_to(ROOT), match.group(0)


def test_cited_docs_exist():
    cited = list(_citations())
    assert any(c.startswith("docs/methods/") for _, c in cited)
    missing = sorted({f"{src}: {doc}" for src, doc in cited if not (ROOT / doc).is_file()})
    assert not missing, "\n".join(missing)


def test_no_code_cites_a_methods_file_outside_the_repository():
    bad = [str(p.relative_to(ROOT)) for folder in SOURCES for p in (ROOT / folder).rglob("*")
           if p.suffix in {".py", ".toml"} and p.is_file() and p != Path(__file__)
           and "METHODS" + ".md" in p.read_text(errors="replace")]
    assert not bad, bad
