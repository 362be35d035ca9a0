"""A student's notebook, executed for real (nbclient + ipykernel): what each cell shows."""
from __future__ import annotations

import shutil

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

from conftest import EXAMPLES, REPO  # noqa: E402

LENET = (EXAMPLES / "lenet.arch").read_text()
CELLS = [
    "import archspec\nreport = archspec.check('lenet.arch')\nreport",
    "bad = archspec.check('input 3x4x4\\nconv 6 k5\\nflatten\\nlinear 10')\nbad",
    "bad.diagnostics[0]",
    "s = archspec.summary(report)\nprint(str(s))",
    "s",
    "archspec.explain(report, layer='conv1')",
    "archspec.graph(report)",
    "archspec.build('input 3x4x4\\nconv 6 k5')",
    "%load_ext archspec",
    "%%arch lenet\n" + LENET,
    "archspec.summary(lenet).total_params",
    "archspec.graph(report, output='net.png')",
    "%%arch for\n" + LENET,
    "%%arch broken\ninput 3x8x8\ncnv 16 k3\nconv 32 k3 p1 | bn | relu\ngap | flatten | linear 10",
    "repr(broken)",
]


@pytest.fixture(scope="module")
def outputs(tmp_path_factory) -> list[list[dict]]:
    work = tmp_path_factory.mktemp("notebook")
    (work / "lenet.arch").write_text(LENET)
    return execute(CELLS, work)


def execute(cells: list[str], work) -> list[list[dict]]:
    """Run the cells in a fresh kernel whose working directory is `work`; each cell's outputs."""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    client = nbclient.NotebookClient(nb, timeout=120, kernel_name="python3", allow_errors=True,
                                     resources={"metadata": {"path": str(work)}})
    import os

    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(REPO) + (os.pathsep + old if old else "")  # the kernel imports this checkout
    try:
        client.execute()
    finally:
        if old is None:
            os.environ.pop("PYTHONPATH")
        else:
            os.environ["PYTHONPATH"] = old
    return [cell.outputs for cell in nb.cells]


def _data(cell_outputs: list[dict]) -> dict:
    for out in cell_outputs:
        if out["output_type"] == "execute_result" or out["output_type"] == "display_data":
            return out["data"]
    raise AssertionError(f"no displayed result in {cell_outputs}")


def test_a_report_shows_as_a_table_with_a_clean_repr(outputs):
    data = _data(outputs[0])
    assert data["text/plain"].startswith("<CheckReport lenet")  # not a multi-kilobyte pydantic dump
    assert "62,006 params" in data["text/plain"]
    assert "<table>" in data["text/html"] and "fc1" in data["text/html"] and "[B, 16, 5, 5]" in data["text/html"]


def test_diagnostics_show_with_their_source_line_and_caret(outputs):
    html = _data(outputs[1])["text/html"]
    assert "error[E101]" in html and "conv 6 k5" in html and "^^^^^^^^^" in html and "help" in html
    assert _data(outputs[2])["text/plain"].startswith("<error[E101] at ")


def test_str_of_a_summary_is_the_table_inside_jupyter(outputs):
    printed = "".join(o.get("text", "") for o in outputs[3] if o["output_type"] == "stream")
    assert "Total params: 62,006" in printed and "conv1" in printed  # rich used to display it and return '\n'
    assert "<table>" in _data(outputs[4])["text/html"]


def test_explain_shows_as_text_not_an_escaped_string(outputs):
    html = _data(outputs[5])["text/html"]
    assert html.startswith("<pre") and "conv1 (line 3): conv 6 k5" in html and "\\n" not in html


def test_the_graph_displays_as_the_interactive_view(outputs):
    html = _data(outputs[6])["text/html"]  # `archspec view`'s page, in a frame of its own (tests/test_view.py drives it)
    assert html.startswith("<iframe srcdoc=") and "archspec-data" in html and "conv1" in html


@pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz's `dot` is not installed (.ci/run installs it)")
def test_the_graph_displays_inline_as_svg_and_png(outputs):
    assert "<svg" in _data(outputs[6])["image/svg+xml"]
    assert "image/png" in _data(outputs[11])


def test_an_arch_error_renders_as_its_diagnostics_not_a_traceback(outputs):
    (error,) = [o for o in outputs[7] if o["output_type"] == "error"]
    text = "\n".join(error["traceback"])
    assert "error[E101]" in text and "^^^^^^^^^" in text and "does not check (1 error(s))" in text
    assert "Traceback" not in text and "File " not in text and "archspec/" not in text


def test_the_arch_cell_magic_checks_and_binds_the_model(outputs):
    assert not [o for o in outputs[8] if o["output_type"] == "error"]
    assert "62,006 params" in _data(outputs[9])["text/html"]
    assert _data(outputs[10])["text/plain"] == "62006"


TRAIN_CELLS = [
    "import archspec\n%load_ext archspec",
    "%%arch lenet\n" + LENET,
    "result = archspec.train(lenet, data='subset', out='run', data_dir='cache', epochs=1, batch_size=25, device='cpu')\nresult",
    "import json\nprint(json.load(open('run/report.json'))['test_accuracy'], result['params'], type(result.model).__name__)",
]


@pytest.fixture(scope="module")
def train_outputs(tmp_path_factory) -> list[list[dict]]:
    pytest.importorskip("torch")
    from test_data import real_subset

    work = tmp_path_factory.mktemp("notebook_train")
    real_subset(work / "subset", 20, 10)  # 200 train and 100 test real CIFAR-10 JPEGs
    return execute(TRAIN_CELLS, work)


def test_training_from_a_cell_shows_one_updating_display_and_the_result(train_outputs):
    cell = train_outputs[2]
    assert not [o for o in cell if o["output_type"] == "error"], cell
    assert not [o for o in cell if o["output_type"] == "stream"]  # no carriage-return chunks, no printed lines
    # One display, created empty and updated in place: every line below arrived as an update.
    (progress,) = [o for o in cell if o["output_type"] == "display_data"]
    text = progress["data"]["text/plain"]
    # the default recipe holds 10% of the 200 training images out for validation
    assert "train: <cell lenet>, 62,006 params, 180 images (and 20 held out for validation: val 0.1)" in text
    assert "epoch   1/1" in text and "\r" not in text
    result = _data([o for o in cell if o["output_type"] == "execute_result"])
    written, params, model = "".join(o["text"] for o in train_outputs[3]).split()
    accuracy = float(written)  # report.json, as `archspec train` writes it
    assert params == "62006" and model == "Net"
    assert f"test accuracy <b>{accuracy:.2%}</b>" in result["text/html"] and "<table>" in result["text/html"]
    assert result["text/plain"].startswith(f"<TrainResult lenet: test accuracy {accuracy:.2%} after 1 epoch")


def test_the_arch_magic_refuses_a_python_keyword_as_the_name(outputs):
    (error,) = [o for o in outputs[12] if o["output_type"] == "error"]
    assert error["traceback"] == ["error: %%arch for: `for` is a Python keyword, so no cell could use it as a name",
                                  "help: choose another name, e.g. %%arch for_net"]


def test_a_network_that_does_not_check_shows_no_totals(outputs):
    html = _data(outputs[13])["text/html"]
    head = html.split("</p>")[0]
    assert head == "<div><p><b>&lt;cell broken&gt;</b>: <b>1 error(s)</b>"  # was "[B, 3, 8, 8] -> [B, 10], 394 params"
    assert "error[E002]" in html
    assert _data(outputs[14])["text/plain"] == "'<CheckReport <cell broken>: 1 error(s), 0 warning(s)>'"
