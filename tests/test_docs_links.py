"""The README is a front door: small, and every relative link of it and of docs/*.md leads somewhere.

- README.md is at most 15 KB (15,360 bytes); the rest lives in docs/ pages.
- Each of the docs pages the README promises exists and is linked from README.md.
- Every relative link (and image) in README.md and docs/**/*.md points to an existing file, and a
  `#anchor` to a heading of the target page (GitHub's slugs: lower case, punctuation dropped, spaces to
  hyphens, `-1`, `-2`, ... for repeated headings). Links inside code blocks and code spans are not links.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
README_MAX_BYTES = 15 * 1024
PAGES = ("data.md", "training.md", "decoding.md", "seq2seq-and-chat.md", "seqgan.md", "benchmarks.md", "demo.md")

FENCE = re.compile(r"^([ \t]*)(```|~~~).*?^\1\2[ \t]*$", re.S | re.M)
CODE_SPAN = re.compile(r"(`+)(?!`).+?(?<!`)\1(?!`)", re.S)
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.+?)[ \t]*#*[ \t]*$", re.M)


def prose(text: str) -> str:
    """`text` without fenced code blocks and code spans (whose brackets are not links)."""
    return CODE_SPAN.sub("", FENCE.sub("", text))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading's text (before de-duplication)."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link or image counts as its text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "").lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    found = set()
    for m in HEADING.finditer(FENCE.sub("", page.read_text(encoding="utf-8"))):
        base = slug(m.group(2))
        n = seen.get(base, 0)
        seen[base] = n + 1
        found.add(base if n == 0 else f"{base}-{n}")
    return found


def links(page: Path) -> list[str]:
    return LINK.findall(prose(page.read_text(encoding="utf-8")))


def pages() -> list[Path]:
    return [README, *sorted((ROOT / "docs").glob("**/*.md"))]


def test_slugs_follow_github():
    assert slug("Seq2Seq: encoder–decoders with attention, and chatbots") == (
        "seq2seq-encoderdecoders-with-attention-and-chatbots")
    assert slug("Real text: `seqlab seqgan train`") == "real-text-seqlab-seqgan-train"
    assert slug("Decoding speed against HF generate()") == "decoding-speed-against-hf-generate"
    assert slug("GPU: one NVIDIA H200") == "gpu-one-nvidia-h200"


def test_links_are_found_outside_code_only():
    text = "see [a](a.md#x) and ![img](p.png)\n```bash\n[no](b.md)\n```\n`[no](c.md)` [d](https://e.org)\n"
    assert LINK.findall(prose(text)) == ["a.md#x", "p.png", "https://e.org"]


def test_readme_is_a_front_door():
    size = README.stat().st_size
    assert size <= README_MAX_BYTES, (f"README.md is {size:,} bytes, over {README_MAX_BYTES:,}: move sections "
                                      f"into docs/ pages and link them")


@pytest.mark.parametrize("name", PAGES)
def test_docs_page_exists_and_is_linked_from_readme(name):
    assert (ROOT / "docs" / name).is_file(), f"docs/{name} is missing"
    targets = {unquote(t.split("#", 1)[0]) for t in links(README)}
    assert f"docs/{name}" in targets, f"README.md does not link docs/{name}"


@pytest.mark.parametrize("page", pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
    broken = []
    for target in links(page):
        if re.match(r"[a-z][a-z0-9+.-]*:", target, re.I):  # https:, mailto:, ...
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / unquote(path)).resolve() if path else page
        if not dest.exists():
            broken.append(f"{target}: no file {dest.relative_to(ROOT) if dest.is_relative_to(ROOT) else dest}")
        elif anchor and dest.suffix == ".md" and unquote(anchor) not in anchors(dest):
            broken.append(f"{target}: no heading with anchor #{anchor} in {dest.relative_to(ROOT)}")
    assert not broken, f"{page.relative_to(ROOT)} has broken links:\n" + "\n".join(broken)
