"""`archspec diff`: golden outputs (regenerate with ARCHSPEC_REGEN=1), a file against itself, the
pairing, `--git`, and the property that per-layer deltas add up to the totals' difference."""
from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest
from hypothesis import HealthCheck, given, settings

import archspec
from archspec.views.diff import diff
from archspec.views.summary import summarize
from conftest import EXAMPLES, REPO

GOLDEN = REPO / "tests" / "golden" / "diff"
FORMATS = {"text": "txt", "json": "json", "markdown": "md"}


@pytest.mark.parametrize("fmt", FORMATS)
def test_golden(cli, monkeypatch, fmt):
    monkeypatch.chdir(GOLDEN)  # bare file names: the output does not depend on where the repo lives
    result = cli("diff", "old.arch", "new.arch", "--format", fmt)
    assert result.returncode == 0, result.stderr
    golden = GOLDEN / f"diff.{FORMATS[fmt]}"
    if os.environ.get("ARCHSPEC_REGEN") == "1":
        golden.write_text(result.stdout)
    assert result.stdout == golden.read_text()


def test_json_numbers_are_the_summaries():
    old, new = summarize(GOLDEN / "old.arch"), summarize(GOLDEN / "new.arch")
    data = diff(old, new).to_dict()
    totals = {t["name"]: t for t in data["totals"]}
    assert totals["params"] == {"name": "params", "old": old.total_params, "new": new.total_params,
                                "delta": new.total_params - old.total_params}
    assert totals["MACs"]["delta"] == new.total_macs - old.total_macs
    assert totals["activations/sample"]["delta"] == new.activation_bytes_per_sample - old.activation_bytes_per_sample
    statuses = {c["name"]: c["status"] for c in data["changes"]}
    assert statuses["basic3.res1.body.conv1"] == "added" and statuses["dropout1"] == "added"
    assert statuses["conv1"] == "changed" and "input1" not in statuses  # the input did not change


@pytest.mark.parametrize("example", sorted(EXAMPLES.glob("*.arch")), ids=lambda p: p.stem)
def test_a_file_against_itself_is_empty(cli, example):
    if example.name == "blocks.arch":  # a block library: no network to summarise
        return
    result = diff(summarize(example), summarize(example))
    assert result.changes == [] and result.empty
    assert all(t.delta in (0, (0, 0), None) for t in result.totals)
    out = cli("diff", str(example), str(example), "--format", "json", "--exit-code")
    assert out.returncode == 0
    assert json.loads(out.stdout)["changes"] == []


def test_pairs_by_path_then_by_position():
    old = summarize("input 3x8x8\nconv 4 k3 p1\nrelu\nflatten\nlinear 10\n", )
    new = summarize("input 3x8x8\nconv 4 k3 p1\nbn\nrelu\nmaxpool 2\nflatten\nlinear 10\n")
    result = diff(old, new)
    assert [(c.status, c.name) for c in result.changes] == [
        ("added", "bn1"), ("added", "pool1"), ("changed", "flatten1"), ("changed", "fc1")]
    # a renamed layer (another conv before it shifts its number) pairs by position, same op
    old = summarize("input 3x8x8\nmaxpool 2\nconv 4 k3\nflatten\nlinear 10\n")
    new = summarize("input 3x8x8\nconv 3 k1\nmaxpool 2\nconv 4 k3\nflatten\nlinear 10\n")
    names = [(c.status, c.name) for c in diff(old, new).changes]
    assert ("removed", "conv1") not in names and ("changed", "conv1") in names
    assert sum(c.params_delta for c in diff(old, new).entries) == new.total_params - old.total_params


def test_exit_code_and_errors(cli, tmp_path):
    changed = cli("diff", str(GOLDEN / "old.arch"), str(GOLDEN / "new.arch"), "--exit-code")
    assert changed.returncode == 1
    one = cli("diff", str(GOLDEN / "old.arch"))
    assert one.returncode == 2 and "error: diff takes two files" in one.stderr and "help:" in one.stderr
    broken = cli("diff", str(GOLDEN / "old.arch"), str(EXAMPLES / "broken" / "kernel_too_large.arch"))
    assert broken.returncode == 1 and "E101" in broken.stderr


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_git_revision_and_textconv(cli, tmp_path, monkeypatch):
    def git(*args: str) -> str:
        return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path,
                              check=True, capture_output=True, text=True).stdout

    git("init", "-q")
    (tmp_path / "net.arch").write_text((GOLDEN / "old.arch").read_text())
    git("add", "net.arch")
    git("commit", "-qm", "old")
    (tmp_path / "net.arch").write_text((GOLDEN / "new.arch").read_text())
    monkeypatch.chdir(tmp_path)
    result = cli("diff", "--git", "HEAD", "net.arch", "--format", "markdown")
    assert result.returncode == 0, result.stderr
    expected = (GOLDEN / "diff.md").read_text().replace("`old.arch`", "`net.arch@HEAD`").replace("`new.arch`", "`net.arch`")
    assert result.stdout == expected
    bad = cli("diff", "--git", "nosuchrev", "net.arch")
    assert bad.returncode == 2 and "cannot read net.arch at nosuchrev" in bad.stderr
    # the textconv set-up of docs/guide/diff.md: `git diff` shows the summaries' difference
    (tmp_path / ".gitattributes").write_text("*.arch diff=arch\n")
    git("config", "diff.arch.textconv", f"{shutil.which('python') or 'python'} -m archspec summary")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    shown = subprocess.run(["git", "diff", "net.arch"], cwd=tmp_path, capture_output=True, text=True, env=env, check=True).stdout
    assert "-Total params: 19,994" in shown and "+Total params: 174,274" in shown


try:
    from test_oracle import Renderer, structured_archs
except pytest.skip.Exception:  # test_oracle needs torch for its own oracle; the strategy is what we use
    structured_archs = None


@pytest.mark.skipif(structured_archs is None, reason="the random architectures live in test_oracle (needs torch)")
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(old=structured_archs() if structured_archs else None, new=structured_archs() if structured_archs else None)
def test_deltas_sum_to_the_totals_difference(old, new):
    reports = [archspec.check(Renderer("nl").render(a), classes=None) for a in (old, new)]
    if not all(r.ok for r in reports):
        return
    a, b = (summarize(r) for r in reports)
    result = diff(a, b)
    assert sum(e.params_delta for e in result.entries) == b.total_params - a.total_params
    assert sum(e.macs_delta for e in result.entries) == b.total_macs - a.total_macs
    # every row of each file appears exactly once
    assert sorted(id(e.old) for e in result.entries if e.old) == sorted(id(r) for r in a.rows if r.kind != "group")
    assert sorted(id(e.new) for e in result.entries if e.new) == sorted(id(r) for r in b.rows if r.kind != "group")
    assert diff(a, a).empty
