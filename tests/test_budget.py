"""Budgets (E301-E305): the numbers agree with `archspec summary` on every example, the limits read
as written, and the CLI flags, the `budget` statement, JSON and SARIF all carry them."""
from __future__ import annotations

import json

import pytest

import archspec
from archspec.language import codes
from archspec.language.budget import evaluate
from archspec.language.limits import BudgetError, make_limit, parse_quantity
from archspec.language.measure import has_stride
from archspec.views.summary import summarize
from conftest import EXAMPLES

NETWORKS = [p for p in sorted(EXAMPLES.glob("*.arch")) if p.name != "blocks.arch"]  # blocks.arch: a library


def _codes(report, limits, batch=1) -> list[str]:
    return [d.code for d in evaluate(report, limits, batch)]


def _limit(metric: str, bound: str, value: int):
    return make_limit(metric, bound, str(value), f"{metric} {'<=' if bound == 'max' else '>='} {value}")  # type: ignore[arg-type]


@pytest.mark.parametrize("path", NETWORKS, ids=lambda p: p.stem)
def test_limits_at_the_summary_numbers_pass_and_one_past_them_fail(path):
    summary = summarize(path)
    report = summary.report
    rows = [r for r in summary.rows if r.kind != "group"]
    exact = {("params", "max"): summary.total_params, ("macs", "max"): summary.total_macs,
             ("activations", "max"): 7 * summary.activation_bytes_per_sample}
    if rows[-1].rf is not None:  # networks on images
        exact[("rf", "min")] = min(rows[-1].rf)
        exact[("rf", "max")] = max(max(r.rf) for r in rows if r.rf)
        strides = [max(r.jump) for r in rows if r.jump and has_stride(r.output_shape)]
        if strides:
            exact[("stride", "max")] = max(strides)
    code = {"params": codes.PARAMS_BUDGET, "macs": codes.MACS_BUDGET, "activations": codes.ACTIVATIONS_BUDGET,
            "rf": codes.RF_BUDGET, "stride": codes.STRIDE_BUDGET}
    for (metric, bound), value in exact.items():
        assert _codes(report, [_limit(metric, bound, value)], batch=7) == [], (metric, bound, value)
        past = value - 1 if bound == "max" else value + 1
        found = evaluate(report, [_limit(metric, bound, past)], 7)
        assert [d.code for d in found] == [code[metric]], (metric, bound, past)
        if metric in ("params", "macs"):
            assert f"{value:,}" in found[0].message
    if ("rf", "max") in exact:  # the first layer past a maximum is the summary's first row past it
        limit = exact[("rf", "max")] - 1
        first = next(r for r in rows if r.rf and max(r.rf) > limit and r.kind == "layer")
        d = evaluate(report, [_limit("rf", "max", limit)])[0]
        assert f"at `{first.name}`" in d.message and d.span.line == first.line


def test_quantities():
    assert parse_quantity("1.5M", "params") == (1_500_000, None)
    assert parse_quantity("600k", "macs") == (600_000, None)
    assert parse_quantity("20MB", "activations") == (20_000_000, None)
    assert parse_quantity("2.5GB@128", "activations") == (2_500_000_000, 128)
    assert parse_quantity("32", "rf") == (32, None)
    for bad, metric in (("1.2345k", "params"), ("20MB", "params"), ("1.5Q", "macs"), ("abc", "rf"), ("5MB@0", "activations")):
        with pytest.raises(BudgetError):
            parse_quantity(bad, metric)  # type: ignore[arg-type]
    with pytest.raises(BudgetError, match="only an upper limit"):
        make_limit("params", "min", "5", "params >= 5")
    with pytest.raises(BudgetError, match="no budget for `flops`"):
        make_limit("flops", "max", "5", "flops <= 5")


def test_flags_set_the_exit_code_and_appear_in_json_and_sarif(cli):
    lenet = str(EXAMPLES / "lenet.arch")
    assert cli("check", lenet, "--max-params", "62006", "--max-macs", "651720", "--min-rf", "32", "--max-stride", "4").returncode == 0
    over = cli("check", lenet, "--max-params", "62k", "--format", "json")
    assert over.returncode == 1
    diags = json.loads(over.stdout)["files"][0]["diagnostics"]
    assert [(d["code"], d["line"]) for d in diags] == [("E301", 2)]
    sarif = json.loads(cli("check", lenet, "--max-activations", "9MB", "--batch-size", "128", "--format", "sarif").stdout)
    results = sarif["runs"][0]["results"]
    assert [r["ruleId"] for r in results] == ["E303"]
    bad = cli("check", lenet, "--max-params", "lots")
    assert bad.returncode == 2 and "error: --max-params: `lots` is not a params limit" in bad.stderr and "help:" in bad.stderr


def test_budget_statement(cli, tmp_path):
    text = "input 3x32x32\nbudget params <= 400, rf >= 3\nconv 6 k3\nbn\n"  # 6*3*9 + 6 = 168 params + 12 bn
    model = archspec.parse(text)
    assert [(lim.metric, lim.bound, lim.value, lim.span.line) for lim in model.budgets] == [("params", "max", 400, 2), ("rf", "min", 3, 2)]
    report = archspec.check(model, classes=None)
    assert report.ok and evaluate(report, model.budgets) == []
    assert archspec.check(model, classes=None).rows[1].op == "conv"  # the statement adds no layer
    path = tmp_path / "net.arch"
    path.write_text(text.replace("400", "100"))
    result = cli("check", str(path), "--select", "E3", "--format", "json")
    d = json.loads(result.stdout)["files"][0]["diagnostics"]
    assert result.returncode == 1 and [x["code"] for x in d] == ["E301"] and "budget set at" in d[0]["notes"][-1]
    # a network with errors is not measured against its budget
    path.write_text("input 3x4x4\nbudget params <= 1\nconv 6 k5\n")
    assert [x["code"] for x in json.loads(cli("check", str(path), "--format", "json").stdout)["files"][0]["diagnostics"]] == ["E101"]


def test_budget_only_at_the_top_level():
    nested = archspec.check("input 3x8x8\nrepeat 2 { budget params <= 5 }\nconv 4 k3\n", classes=None)
    assert [d.code for d in nested.diagnostics] == [codes.UNDEFINED_NAME]
    assert "only allowed at the top level" in nested.diagnostics[0].message
    wrong = archspec.check("input 3x8x8\nbudget flops <= 5, params >= 2\nconv 4 k3\n", classes=None)
    assert [d.code for d in wrong.diagnostics] == [codes.UNKNOWN_ARGUMENT, codes.INVALID_VALUE]


def test_fmt_keeps_a_budget(cli):
    out = cli("fmt", "-", stdin="input 3x32x32\nbudget  params<=1.5M ,activations <= 20MB@128  # ci\nconv 6 k3\n")
    assert out.stdout == "input 3x32x32\nbudget params <= 1.5M, activations <= 20MB@128  # ci\nconv 6 k3\n"
