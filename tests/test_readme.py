"""The README's Python examples run as written, pasted in order into one file.

Every ```python block of README.md — and of each docs/**/*.md page, one page at a time — is pasted, in
order, into one script that runs in a fresh interpreter in an empty directory: what a reader who copies
the blocks into a file gets. The script keeps the page's line numbers (the lines between blocks are
blank), so a traceback's `README.md.py, line N` is line N of README.md. The text is run unchanged.

What the test does around it, and nothing else:

- Run directories the blocks read (a string "runs/NAME") are made first by the documented command for
  them: the ```bash line `seqlab train PRESET ... --out runs/NAME` (looked up in the page, then in
  README.md, then in the other docs pages), run with `TINY` appended — two steps of a small model, since
  the examples need a run of that kind, not a good one. A run no such line makes must come from a block.
- The environment: offline (HF_HUB_OFFLINE, TRANSFORMERS_OFFLINE, proxies pointing at a closed port),
  the session's private user cache (XDG_CACHE_HOME, shared with the runs made above), a non-interactive
  matplotlib, one torch thread (two spin against each other on a busy 2-core CPU), and
  TORCH_COMPILE_DISABLE=1 so that `compile_step=True` decodes eagerly (Inductor needs a minute or more of
  a busy 2-core CPU to compile; tests/decode/test_compiled.py covers the compiled step).

Before anything runs, a static check fails on a name a page's blocks use but never define (with the
page's line), and on a README section (`<!-- section:NAME -->`) whose blocks use a name only another
section defines: sections are meant to move into docs/ pages, where each page runs on its own.
"""

from __future__ import annotations

import ast
import builtins
import os
import re
import shlex
import subprocess
import symtable
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import shared_data_file

ROOT = Path(__file__).resolve().parents[1]

# Appended to each `seqlab train ... --out runs/NAME` line the examples need (keys every preset has).
TINY = ("train.max_steps=2", "train.warmup_steps=1", "train.batch_size=8", "train.eval_batches=1",
        "train.samples=0", "model.n_layer=1", "model.n_embd=48", "model.hidden_size=64")

OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9",
           "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9", "no_proxy": "", "NO_PROXY": "",
           "MPLBACKEND": "Agg", "TORCH_COMPILE_DISABLE": "1", "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}

FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>[^\s`]*)[^\n]*\n(?P<body>.*?)^(?P=indent)```[ \t]*$",
                   re.S | re.M)
SECTION = re.compile(r"^<!-- section:(?P<name>[\w.-]+) -->$(?P<body>.*?)^<!-- /section:(?P=name) -->$", re.S | re.M)
RUN_PATH = re.compile(r"""["'](runs/[\w.-]+)""")


@dataclass
class Block:
    lang: str
    line: int  # 1-based line of the block's first code line in the page
    code: str


def blocks(text: str, start_line: int = 1) -> list[Block]:
    """The fenced code blocks of markdown `text`, in order (an indented fence, e.g. in a list, is dedented)."""
    found = []
    for m in FENCE.finditer(text):
        indent = len(m["indent"])
        code = "".join(ln[indent:] if ln[:indent].strip() == "" else ln for ln in m["body"].splitlines(True))
        line = start_line + text.count("\n", 0, m.start("body"))
        found.append(Block(m["lang"].lower(), line, code))
    return found


def python_blocks(text: str, start_line: int = 1) -> list[Block]:
    return [b for b in blocks(text, start_line) if b.lang in ("python", "py", "python3")]


def script(text: str, start_line: int = 1) -> str:
    """The page's python blocks in order, each at its own line of the page (other lines blank)."""
    lines: list[str] = []
    for b in python_blocks(text, start_line):
        lines += [""] * (b.line - 1 - len(lines))
        lines += b.code.splitlines()
    return "\n".join(lines) + "\n"


def undefined_names(source: str) -> dict[str, int]:
    """Names `source` reads as globals but never binds at module level (nor builtins): name -> first line."""
    top = symtable.symtable(source, "<examples>", "exec")
    bound = {s.get_name() for s in top.get_symbols() if s.is_assigned() or s.is_imported() or s.is_namespace()}
    read: set[str] = set()

    def walk(table: symtable.SymbolTable) -> None:
        for s in table.get_symbols():
            if s.is_referenced() and (table is top or s.is_global()):
                read.add(s.get_name())
        for child in table.get_children():
            walk(child)

    walk(top)
    missing = read - bound - set(dir(builtins)) - {"__file__", "__name__"}
    lines: dict[str, int] = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Name) and node.id in missing:
            lines[node.id] = min(lines.get(node.id, node.lineno), node.lineno)
    return dict(sorted(lines.items(), key=lambda kv: kv[1]))


def pages() -> list[Path]:
    found = [ROOT / "README.md", *sorted((ROOT / "docs").glob("**/*.md"))]
    return [p for p in found if p.is_file() and python_blocks(p.read_text(encoding="utf-8"))]


PAGES = pages()
IDS = [str(p.relative_to(ROOT)) for p in PAGES]


def train_commands(text: str) -> dict[str, list[str]]:
    """`seqlab train ... --out runs/NAME` lines of the page's ```bash blocks: runs/NAME -> argv after `seqlab`."""
    commands: dict[str, list[str]] = {}
    for b in blocks(text):
        if b.lang not in ("bash", "sh", "shell", "console"):
            continue
        for line in b.code.replace("\\\n", " ").splitlines():
            try:
                argv = shlex.split(line, comments=True)
            except ValueError:
                continue
            if argv[:2] != ["seqlab", "train"] or "--resume" in argv or "--out" not in argv[:-1]:
                continue
            out = os.path.normpath(argv[argv.index("--out") + 1])
            commands.setdefault(out, argv[1:])
    return commands


@pytest.mark.parametrize("page", PAGES, ids=IDS)
def test_examples_define_every_name_they_use(page):
    text = page.read_text(encoding="utf-8")
    source = script(text)
    compile(source, f"{page.name}.py", "exec")  # a syntax error names the page's line
    missing = undefined_names(source)
    assert not missing, (f"{page.relative_to(ROOT)}: python blocks use names no block defines (line of first use): "
                         f"{missing}; define them in an earlier block of the page")
    for m in SECTION.finditer(text):
        section = script(m["body"], start_line=text.count("\n", 0, m.start("body")) + 1)
        missing = undefined_names(section)
        assert not missing, (f"{page.relative_to(ROOT)}, section {m['name']!r}: its python blocks use names only "
                             f"other sections define (line of first use): {missing}; sections move into docs/ "
                             f"pages and run alone, so define them in the section")


def test_the_static_check_catches_an_undefined_name():
    text = "```python\nimport torch\nx = torch.zeros(2)\n```\n\nprose\n\n```python\nprint(x, tok.encode('a'))\n```\n"
    assert undefined_names(script(text)) == {"tok": 9}
    assert undefined_names("for i in range(2):\n    y = [i + j for j in range(i)]\nprint(y)\n") == {}
    assert undefined_names("def f():\n    return held_out\n") == {"held_out": 2}


def test_train_commands_are_read_from_bash_blocks():
    text = ("```bash\nseqlab train a-preset --out runs/a   # comment\nseqlab train --resume runs/a\n"
            "seqlab train b --set x=1 \\\n    --out runs/b\nseqlab generate runs/a\n```\n")
    assert train_commands(text) == {"runs/a": ["train", "a-preset", "--out", "runs/a"],
                                    "runs/b": ["train", "b", "--set", "x=1", "--out", "runs/b"]}


@pytest.mark.parametrize("page", PAGES, ids=IDS)
def test_examples_run_as_written(page, tmp_path, cli, monkeypatch):
    shared_data_file("tinyshakespeare.txt")
    shared_data_file("seqgan_oracle_params.npz")
    text = page.read_text(encoding="utf-8")
    source = script(text)
    commands: dict[str, list[str]] = {}
    for other in reversed([page, ROOT / "README.md", *PAGES]):  # the page's own line first, then README's, ...
        commands.update(train_commands(other.read_text(encoding="utf-8")))
    monkeypatch.chdir(tmp_path)
    for run in sorted(set(RUN_PATH.findall(source))):
        if run in commands:
            argv = [*commands[run], *(a for key in TINY for a in ("--set", key)), "--device", "cpu"]
            made = cli(*argv)
            assert made.exit_code == 0, (f"making {run} with `seqlab {shlex.join(argv)}` failed:\n"
                                         f"{made.stderr[-3000:]}")
    path = tmp_path / f"{page.name}.py"
    path.write_text(source, encoding="utf-8")
    env = {**os.environ, **OFFLINE}
    done = subprocess.run([sys.executable, path.name], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, (
        f"{page.relative_to(ROOT)}'s python blocks, pasted in order into {path.name} (line numbers are the "
        f"page's), failed; a run directory an example reads needs a `seqlab train ... --out runs/NAME` line in a "
        f"bash block or an earlier block that makes it.\n--- stderr (end) ---\n{done.stderr[-6000:]}\n"
        f"--- stdout (end) ---\n{done.stdout[-2000:]}")
