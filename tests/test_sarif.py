"""`archspec check --format sarif` (SARIF 2.1.0) and the pre-commit hook definition."""
from __future__ import annotations

import json


import archspec
from archspec.language.diagnostics import CODES
from archspec.views.sarif import artifact_uri, to_sarif
from conftest import EXAMPLES, REPO

BROKEN = "input 3x4x4\nblock b(c) { conv c k5 }\nb(6)\nrelu | relu\nflatten\nlinear 10\n"




def test_log_shape_and_rules():
    log = to_sarif([archspec.check(archspec.parse(BROKEN, "nets/broken.arch"))])
    assert log["version"] == "2.1.0" and log["$schema"].endswith("sarif-2.1.0.json")
    (run,) = log["runs"]
    driver = run["tool"]["driver"]
    assert driver["name"] == "archspec" and driver["version"] == archspec.__version__
    assert [r["id"] for r in driver["rules"]] == list(CODES)
    for rule in driver["rules"]:
        info = CODES[rule["id"]]
        assert rule["name"] == info.name and rule["shortDescription"]["text"] == info.summary
        assert rule["defaultConfiguration"]["level"] == info.severity and rule["help"]["text"]
    assert run["artifacts"] == [{"location": {"uri": "nets/broken.arch"}}]
    json.dumps(log)


def test_results_point_at_the_source():
    log = to_sarif([archspec.check(archspec.parse(BROKEN, "nets/broken.arch"))])
    results = log["runs"][0]["results"]
    rules = log["runs"][0]["tool"]["driver"]["rules"]
    assert [r["ruleId"] for r in results] == ["E101", "W203"]
    kernel, twice = results
    assert rules[kernel["ruleIndex"]]["id"] == "E101" and kernel["level"] == "error" and twice["level"] == "warning"
    region = kernel["locations"][0]["physicalLocation"]["region"]
    # The error is in the block body (line 2, `conv c k5`), called from line 3.
    assert region == {"startLine": 2, "startColumn": 14, "endLine": 2, "endColumn": 23}
    assert kernel["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "nets/broken.arch"
    assert "help: " in kernel["message"]["text"] and "note: " in kernel["message"]["text"]
    (called,) = kernel["relatedLocations"]
    assert called["physicalLocation"]["region"]["startLine"] == 3 and "`b`" in called["message"]["text"]
    assert twice["locations"][0]["physicalLocation"]["region"]["startLine"] == 4


def test_uris():
    assert artifact_uri("<stdin>") == "%3Cstdin%3E"
    assert artifact_uri("a b/c.arch") == "a%20b/c.arch"
    assert artifact_uri("/no/such/dir/x.arch") == "file:///no/such/dir/x.arch"


def test_cli_sarif(tmp_path, cli, monkeypatch):
    (tmp_path / "bad.arch").write_text(BROKEN)
    monkeypatch.chdir(tmp_path)
    out = cli("check", "--format", "sarif", "bad.arch", str(EXAMPLES / "lenet.arch"))
    assert out.returncode == 1
    log = json.loads(out.stdout)
    run = log["runs"][0]
    assert [a["location"]["uri"] for a in run["artifacts"]][0] == "bad.arch"
    assert {r["ruleId"] for r in run["results"]} == {"E101", "W203"}
    clean = cli("check", "--format", "sarif", str(EXAMPLES / "lenet.arch"))
    assert clean.returncode == 0 and json.loads(clean.stdout)["runs"][0]["results"] == []
    ignored = cli("check", "--format", "sarif", "--ignore", "W2", "-", stdin=BROKEN)
    assert [r["ruleId"] for r in json.loads(ignored.stdout)["runs"][0]["results"]] == ["E101"]


def read_hooks(text: str) -> dict[str, dict]:
    """The hook list: `- key: value` starts a hook, `  key: value` continues it (no YAML library needed)."""
    hooks: list[dict] = []
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line.startswith("- "):
            hooks.append({})
        key, _, value = line[2:].partition(":")
        value = value.strip()
        hooks[-1][key.strip()] = [v.strip() for v in value[1:-1].split(",")] if value.startswith("[") else value
    return {h["id"]: h for h in hooks}


def test_pre_commit_hooks(cli):
    hooks = read_hooks((REPO / ".pre-commit-hooks.yaml").read_text())
    check = hooks["archspec-check"]
    assert check["entry"] == "archspec check" and check["language"] == "python" and check["files"] == r"\.arch$"
    assert hooks["archspec-fmt"]["entry"] == "archspec fmt"
    # What pre-commit runs: the entry, its args, then the staged file names.
    out = cli(*check["entry"].split()[1:], *check.get("args", []), str(EXAMPLES / "lenet.arch"))
    assert out.returncode == 0 and "1 file checked" in out.stdout and "conv1" not in out.stdout
