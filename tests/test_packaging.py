"""The static path never needs torch, the wheel carries the grammar, and start-up stays fast."""
from __future__ import annotations

import os
import subprocess
import sys
import venv

import pytest

from conftest import EXAMPLES, REPO

# A meta-path finder that makes `import torch` / `import torchvision` fail, as on a machine without them.
BLOCK_TORCH = """
import sys
class _NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('torch', 'torchvision'):
            raise ImportError(f'No module named {name!r}', name=name)
sys.meta_path.insert(0, _NoTorch())
"""


def run_without_torch(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCK_TORCH + code], capture_output=True, text=True, cwd=REPO)


def test_check_works_when_torch_cannot_be_imported():
    cp = run_without_torch(
        "from archspec.cli import main\n"
        f"code = main(['check', '-q', {str(EXAMPLES / 'lenet.arch')!r}, {str(EXAMPLES / 'allconv.arch')!r}])\n"
        "assert 'torch' not in sys.modules\n"
        "sys.exit(code)\n"
    )
    assert cp.returncode == 0, cp.stderr
    assert "2 files checked: 2 ok" in cp.stdout


def test_import_archspec_does_not_import_torch():
    cp = subprocess.run(
        [sys.executable, "-c", "import sys, archspec; archspec.check(open('examples/lenet.arch').read()); "
         "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision')))"],
        capture_output=True, text=True, cwd=REPO,
    )
    assert cp.returncode == 0 and cp.stdout.strip() == "[]", cp.stdout + cp.stderr


def test_torch_command_without_torch_names_the_extra():
    cp = run_without_torch(
        "import archspec\n"
        "try:\n    archspec.build('input 3x8x8\\nflatten\\nlinear 10')\n"
        "except archspec.ArchspecError as e:\n    print(e.message); print(e.help)\n"
    )
    assert cp.returncode == 0, cp.stderr
    assert cp.stdout.splitlines()[1] == (
        "install the extra: pip install 'archspec-cnn[torch]' (archspec-cnn is this project's name on the index; "
        "`pip install archspec` installs an unrelated package)")


def test_distribution_name_differs_from_the_import_name():
    """`archspec` on the index is another project (conda's); ours installs as archspec-cnn, imports and runs as archspec."""
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["name"] == "archspec-cnn"
    assert project["scripts"] == {"archspec": "archspec.cli:main"}
    for page in (REPO / "README.md", REPO / "docs" / "guide" / "installing.md"):  # where users read how to install
        text = page.read_text()
        assert "pip install 'archspec[" not in text and "pip install archspec " not in text, page
        assert "pip install 'archspec-cnn[torch]'" in text, page


@pytest.mark.slow
def test_wheel_ships_the_grammar_and_checks_a_file(tmp_path):
    """Non-editable install into a fresh venv (no torch): the grammar comes from inside the wheel."""
    wheels = tmp_path / "wheels"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels), str(REPO)],
                           capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    wheel = next(wheels.glob("archspec_cnn-*.whl"))  # the distribution name; `archspec` on the index is another project
    import zipfile

    assert "archspec/grammar/archspec.lark" in zipfile.ZipFile(wheel).namelist()
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    # Without PYTHONPATH: a source tree on it (with the build's egg-info) would look installed to the venv's pip.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    install = subprocess.run([str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(wheel)],
                             capture_output=True, text=True, env=env)
    if install.returncode != 0 and "Could not find a version" in install.stderr + install.stdout:
        pytest.skip("package index unreachable for the wheel's dependencies")
    assert install.returncode == 0, install.stderr
    bad = tmp_path / "bad.arch"
    bad.write_text("input 3x4x4\nconv 6 k5\n")
    exe = env_dir / "bin" / "archspec"
    ok = subprocess.run([str(exe), "check", str(EXAMPLES / "lenet.arch")], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert ok.returncode == 0, ok.stderr
    assert "62,006 params" in ok.stdout
    fail = subprocess.run([str(exe), "check", str(bad)], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert fail.returncode == 1 and "error[E101]" in fail.stdout
    where = subprocess.run([str(py), "-c", "import archspec, torch"], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert "No module named 'torch'" in where.stderr  # the lint install really has no torch


def test_wheel_ships_the_view_page_and_its_layout_library(tmp_path):
    """`archspec view` needs no npm: its script, style and dagre are package data inside the wheel."""
    import zipfile

    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(REPO)],
                           capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    names = set(zipfile.ZipFile(next(tmp_path.glob("archspec_cnn-*.whl"))).namelist())
    from archspec.views.interactive import SCRIPTS, STYLES

    for part in SCRIPTS + STYLES + ("THIRD_PARTY.md",):
        assert f"archspec/views/web/{part}" in names, part


def test_a_plain_checkout_loads_its_own_grammar(tmp_path):
    """Not installed (no editable finder, no wheel): the grammar comes from the checkout's grammar/ folder."""
    import shutil

    shutil.copytree(REPO / "archspec", tmp_path / "archspec", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "grammar", tmp_path / "grammar")
    code = (
        "import sys\n"
        "sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in type(f).__name__.lower()\n"
        "                    and 'editable' not in getattr(f, '__module__', '').lower()]\n"
        "import archspec\n"
        "from archspec.language import syntax\n"
        "assert archspec.__file__.startswith(sys.argv[1]), archspec.__file__\n"
        "assert str(syntax._CHECKOUT_GRAMMAR).startswith(sys.argv[1]) and syntax._CHECKOUT_GRAMMAR.is_file()\n"
        "print(archspec.check('input 3x8x8\\nconv 4 k3').output_shape)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    cp = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=tmp_path, capture_output=True, text=True, env=env)
    assert cp.returncode == 0, cp.stderr
    assert cp.stdout.strip() == "(4, 6, 6)"


def test_pytest_starts_without_a_deprecation_warning():
    # -W default shows warnings that an outer filter might hide; the collection is enough to configure every plugin.
    cp = subprocess.run([sys.executable, "-W", "default", "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                         "tests/test_packaging.py"], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert "test_pytest_starts_without_a_deprecation_warning" in cp.stdout  # it ran and collected this file
    assert "PytestDeprecationWarning" not in cp.stdout + cp.stderr, cp.stdout + cp.stderr


def test_a_torchvision_built_for_another_torch_is_one_error_naming_the_versions(tmp_path):
    # The common mix after installing from two indexes: torchvision's C++ operators are missing at import.
    fake = tmp_path / "torchvision"
    fake.mkdir()
    (fake / "__init__.py").write_text('raise RuntimeError("operator torchvision::nms does not exist")\n')
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)])}
    cp = subprocess.run([sys.executable, "-m", "archspec", "train", str(EXAMPLES / "lenet.arch"), "--out", str(tmp_path / "run")],
                        capture_output=True, text=True, cwd=REPO, env=env, timeout=120)
    from importlib.metadata import version

    torch_version, vision_version = version("torch"), version("torchvision")  # what pip installed, as the message reads it
    release, _, label = torch_version.partition("+")
    index = f" --index-url https://download.pytorch.org/whl/{label}" if label else ""
    assert cp.returncode == 1 and cp.stdout == ""
    assert cp.stderr.splitlines() == [
        "error: torchvision fails to import (RuntimeError: operator torchvision::nms does not exist): "
        f"installed are torch {torch_version} and torchvision {vision_version}, which must be built for each other",
        f"help: install the torchvision built for torch {torch_version} from the same index, e.g. "
        f"pip install 'torch=={release}' 'torchvision==0.{int(release.split('.')[1]) + 15}.*'{index}",
    ]
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("torch_version, expected", [
    # PyTorch's compatibility table: torchvision 0.17 for torch 2.2, 0.21 for 2.6; the local label names the wheel index.
    ("2.2.2", "pip install 'torch==2.2.2' 'torchvision==0.17.*'"),
    ("2.6.0+cpu", "pip install 'torch==2.6.0' 'torchvision==0.21.*' --index-url https://download.pytorch.org/whl/cpu"),
    ("2.7.1+cu126", "pip install 'torch==2.7.1' 'torchvision==0.22.*' --index-url https://download.pytorch.org/whl/cu126"),
])
def test_the_help_names_the_torchvision_built_for_the_installed_torch(torch_version, expected):
    from archspec.pytorch.extra import _reinstall_help

    assert _reinstall_help("torchvision", torch_version).endswith("e.g. " + expected)
