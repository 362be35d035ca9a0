"""The docs site cannot rot: it builds strictly, its networks check, its real outputs are regenerated,
its commands parse, and its Neovim configurations start the language server.

Markers in docs/*.md (HTML comments, on the line before a fenced block):
- every ```arch block must check clean, or, if its first line is `# expect: CODE ...`, report exactly those codes;
- `<!-- real-output -->` before a ```text block whose first line is `$ archspec ...` (here and in README.md):
  the rest of the block is that command's output, regenerated here (ARCHSPEC_REGEN=1 rewrites the block);
- `archspec ...` lines in ```bash blocks (here and in README.md) must parse with the command line's own parser, except in a block
  after `<!-- pending: ... -->` (a step whose command is not in this version yet);
- `<!-- neovim-config: VERSION -->` before a ```lua block (here and in README.md): run by Neovim (if at least
  VERSION) headless.
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import REPO

DOCS = REPO / "docs"
PAGES = sorted(DOCS.rglob("*.md"))
README = REPO / "README.md"
README_MAX_LINES = 250  # the README is the front page; everything else is in the docs
_FENCE = re.compile(r"^(?:<!-- (?P<marker>[^>]*) -->\n)?```(?P<lang>[\w-]*)\n(?P<body>.*?)^```$", re.MULTILINE | re.DOTALL)


@dataclass(frozen=True)
class Block:
    page: Path
    line: int
    lang: str
    marker: str
    body: str
    start: int  # offset of the body in the page
    end: int

    def __str__(self) -> str:
        return f"{self.page.relative_to(REPO)}:{self.line}"


def blocks(lang: str, marker: str | None = None, pages: list[Path] = PAGES) -> list[Block]:
    found = []
    for page in pages:
        text = page.read_text()
        for m in _FENCE.finditer(text):
            if m.group("lang") == lang and (marker is None or (m.group("marker") or "").startswith(marker)):
                found.append(Block(page, text.count("\n", 0, m.start("body")) + 1, lang, m.group("marker") or "",
                                   m.group("body"), m.start("body"), m.end("body")))
    return found


def test_the_site_builds_strictly(tmp_path):
    """Broken links, missing pages and unknown markers fail the build (`--strict` turns warnings into errors)."""
    cp = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(tmp_path / "site")],
                        cwd=REPO, capture_output=True, text=True, timeout=300,
                        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert cp.returncode == 0, cp.stdout + cp.stderr
    site = tmp_path / "site"
    from archspec.language.codes import CODES
    from archspec.language.ops import OPS

    ops_page = (site / "reference" / "ops" / "index.html").read_text()
    codes_page = (site / "reference" / "codes" / "index.html").read_text()
    cli_page = (site / "reference" / "cli" / "index.html").read_text()
    assert all(f"<code>{name}</code>" in ops_page for name in OPS)
    assert all(f">{code} <code>{info.name}</code>" in codes_page for code, info in CODES.items())
    assert "<code>--max-params N</code>" in cli_page and "<code>--nproc-per-node N</code>" in cli_page
    assert "Contributing to archspec" in (site / "contributing" / "index.html").read_text()


def test_the_readme_is_short_and_links_only_to_files_that_exist():
    """The README is the front page: under 250 lines, with its set-up commands, and its links resolve."""
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) < README_MAX_LINES, f"README.md has {len(text.splitlines())} lines; move detail into docs/"
    for command in ("pip install . && archspec check examples/*.arch",
                    "pip install -e '.[torch,plot,test,lsp,onnx]' && python -m pytest -q -n 2"):
        assert command in text, f"README.md lost its set-up command `{command}` (.ci/run follows it)"
    targets = re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", text)
    assert targets, "the README links into the docs"
    missing = [t for t in targets if not (REPO / t).exists()]
    assert not missing, f"README.md links to files that do not exist: {missing}"


def test_every_command_and_flag_is_in_the_cli_reference():
    sys.path.insert(0, str(REPO / "tools"))
    from docs_hooks import cli_reference

    from archspec.cli import make_parser

    page = cli_reference()
    commands = next(a for a in make_parser()._actions if a.dest == "command")
    for name, parser in commands.choices.items():
        assert f"## `archspec {name}`" in page
        for action in parser._actions:
            for option in action.option_strings if action.dest != "help" else ():
                assert f"`{option}" in page, (name, option)


def test_each_code_example_shows_its_code():
    """The reference shows, for each code, the examples/broken/ file and its real output: the code must be in it."""
    sys.path.insert(0, str(REPO / "tools"))
    from docs_hooks import _broken_examples, _check_output

    examples = _broken_examples()
    assert len(examples) >= 30
    for code, path in examples.items():
        assert f"[{code}]" in _check_output(path), (code, path)


@pytest.mark.parametrize("block", blocks("arch"), ids=str)
def test_arch_blocks_check(block):
    from archspec.language.pipeline import checked

    report = checked(block.body, name=str(block))
    expect = re.match(r"# expect: (.+)\n", block.body)
    codes = sorted(str(d.code) for d in report.diagnostics)
    assert codes == sorted(expect.group(1).split() if expect else []), "\n".join(d.message for d in report.diagnostics)


def run_shown(command: str) -> str:
    argv = shlex.split(command)
    assert argv[0] == "archspec", "a real output is an archspec command's"
    cp = subprocess.run([sys.executable, "-m", "archspec", *argv[1:]], cwd=REPO, capture_output=True, text=True,
                        timeout=120, env={**os.environ, "NO_COLOR": "1", "TERM": "dumb", "COLUMNS": "120"})
    assert "Traceback" not in cp.stderr
    return cp.stdout + cp.stderr


@pytest.mark.parametrize("block", blocks("text", "real-output", [*PAGES, README]), ids=str)
def test_real_outputs_are_what_the_commands_print(block):
    first, _, shown = block.body.partition("\n")
    assert first.startswith("$ "), f"{block}: a real output starts with `$ command`"
    output = run_shown(first[2:])
    if os.environ.get("ARCHSPEC_REGEN"):
        text = block.page.read_text()
        block.page.write_text(text[:block.start] + first + "\n" + output + text[block.end:])
        return
    assert shown == output, f"{block}: regenerate with ARCHSPEC_REGEN=1 python -m pytest tests/test_docs.py"


def shown_commands() -> list[tuple[Block, str]]:
    found = []
    for block in blocks("bash", pages=[*PAGES, README]):
        if block.marker.startswith("pending:"):
            continue
        for line in block.body.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words[:1] == ["archspec"]:
                cut = next((i for i, w in enumerate(words) if w in {">", "<", "|", "||", "&&", ";"}), len(words))
                found.append((block, shlex.join(words[1:cut])))
    return found


@pytest.mark.parametrize("block, command", shown_commands(), ids=lambda v: str(v) if isinstance(v, Block) else "")
def test_shown_commands_parse(block, command):
    from archspec.cli import make_parser

    try:
        make_parser().parse_args(shlex.split(command))
    except SystemExit as exc:
        pytest.fail(f"{block}: `archspec {command}` does not parse (exit {exc.code})")


# ---- Neovim: the configurations on docs/how-to/editors.md, in the Neovim found on PATH ----

PROBE = """
local clients = function() return (vim.lsp.get_clients or vim.lsp.get_active_clients)() end
local ok = vim.wait(30000, function()
  for _, c in pairs(clients()) do
    if c.initialized and #vim.diagnostic.get(0) > 0 then return true end
  end
  return false
end, 100)
local lines = { "filetype=" .. vim.bo.filetype, "commentstring=" .. vim.bo.commentstring }
for _, c in pairs(clients()) do table.insert(lines, "client=" .. c.name .. " cmd=" .. table.concat(c.config.cmd, " ")) end
for _, d in ipairs(vim.diagnostic.get(0)) do table.insert(lines, "code=" .. tostring(d.code)) end
table.insert(lines, "ready=" .. tostring(ok))
vim.fn.writefile(lines, vim.env.PROBE_OUT)
vim.cmd("qall!")
"""


def neovim_version(nvim: str) -> tuple[int, int]:
    first = subprocess.run([nvim, "--version"], capture_output=True, text=True, timeout=30).stdout.splitlines()[0]
    major, minor = re.match(r"NVIM v(\d+)\.(\d+)", first).groups()
    return int(major), int(minor)


@pytest.mark.parametrize("block", blocks("lua", "neovim-config", [*PAGES, README]), ids=str)
def test_neovim_config_starts_archspec_lsp(block, tmp_path):
    """As a user would: the config as init.lua, a broken .arch opened; the filetype, the server and its diagnostic."""
    nvim = shutil.which("nvim")
    if nvim is None:
        if os.environ.get("CI"):
            pytest.fail("CI is set but nvim is not installed; .ci/run installs Debian's neovim")
        pytest.skip("nvim is not installed")
    needs = tuple(int(p) for p in block.marker.split(":")[1].strip().split("."))
    have = neovim_version(nvim)
    if have < needs:
        pytest.skip(f"this configuration needs Neovim {needs}, the installed one is {have}")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "archspec"  # `archspec` on PATH, as installed: this checkout's
    shim.write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} -m archspec \"$@\"\n")
    shim.chmod(0o755)
    (tmp_path / "init.lua").write_text(block.body)
    (tmp_path / "probe.lua").write_text(PROBE)
    project = tmp_path / "project"
    project.mkdir()
    (project / "bad.arch").write_text("input 3x4x4\nconv 6 k5\nflatten\nlinear 10\n")
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "PROBE_OUT": str(tmp_path / "out.txt"),
           "XDG_CONFIG_HOME": str(tmp_path / "config"), "XDG_DATA_HOME": str(tmp_path / "data"),
           "XDG_STATE_HOME": str(tmp_path / "state"), "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    subprocess.run([nvim, "--headless", "-u", str(tmp_path / "init.lua"), "-c", f"luafile {tmp_path / 'probe.lua'}", "bad.arch"],
                   cwd=project, env=env, capture_output=True, text=True, timeout=90)
    lines = (tmp_path / "out.txt").read_text().splitlines()
    assert lines == ["filetype=archspec", "commentstring=# %s", "client=archspec cmd=archspec lsp", "code=E101", "ready=true"]
