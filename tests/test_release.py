"""Release readiness: the sdist and wheel that `python -m build` makes, the pre-commit hooks other
repositories use, the packaged VS Code extension, and one version number for all of them."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from archspec._version import VERSION
from conftest import EXAMPLES, REPO

VSCODE = REPO / "editors" / "vscode"
# What the package reads at run time besides its modules: the grammar, and `archspec view`'s page.
RUNTIME_ASSETS = ("archspec/grammar/archspec.lark", "archspec/views/web/view.js", "archspec/views/web/view.css",
                  "archspec/views/web/vendor/dagre.min.js", "archspec/views/web/THIRD_PARTY.md")


def tracked(*patterns: str) -> list[str]:
    return subprocess.run(["git", "ls-files", *patterns], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    """`python -m build`: the sdist, then the wheel built from the unpacked sdist (so the sdist must be complete)."""
    out = tmp_path_factory.mktemp("dist")
    cp = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(REPO)],
                        capture_output=True, text=True, timeout=300)
    assert cp.returncode == 0, cp.stdout[-3000:] + cp.stderr[-3000:]
    return out


def test_twine_accepts_the_sdist_and_the_wheel(dist):
    files = sorted(dist.iterdir())
    assert [f.name for f in files] == [f"archspec_cnn-{VERSION}-py3-none-any.whl", f"archspec_cnn-{VERSION}.tar.gz"]
    cp = subprocess.run([sys.executable, "-m", "twine", "check", "--strict", *map(str, files)], capture_output=True, text=True)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert cp.stdout.count("PASSED") == 2


def test_the_wheel_holds_every_module_the_runtime_assets_and_the_entry_point(dist):
    wheel = zipfile.ZipFile(dist / f"archspec_cnn-{VERSION}-py3-none-any.whl")
    names = set(wheel.namelist())
    modules = [p for p in tracked("archspec/*.py", "archspec/**/*.py")]
    assert modules and not [m for m in modules if m not in names]
    assert not [a for a in RUNTIME_ASSETS if a not in names]
    info = f"archspec_cnn-{VERSION}.dist-info"
    assert f"{info}/licenses/LICENSE" in names
    assert "archspec = archspec.cli:main" in wheel.read(f"{info}/entry_points.txt").decode()
    metadata = wheel.read(f"{info}/METADATA").decode()
    assert f"\nVersion: {VERSION}\n" in metadata and "\nName: archspec-cnn\n" in metadata
    assert "Description-Content-Type: text/markdown" in metadata
    assert not [n for n in names if n.startswith(("tests/", "docs/", "benchmarks/"))]


def test_the_sdist_holds_the_sources_grammar_and_license(dist):
    with tarfile.open(dist / f"archspec_cnn-{VERSION}.tar.gz") as sdist:
        names = {n.split("/", 1)[1] for n in sdist.getnames() if "/" in n}
    wanted = ["pyproject.toml", "README.md", "LICENSE", "grammar/archspec.lark",
              *[a for a in RUNTIME_ASSETS if a.startswith("archspec/views/")], *tracked("archspec/*.py", "archspec/**/*.py")]
    assert not [w for w in wanted if w not in names]


def test_one_version_for_the_package_the_extension_and_the_changelog():
    package = json.loads((VSCODE / "package.json").read_text())
    lock = json.loads((VSCODE / "package-lock.json").read_text())
    released = re.findall(r"^## \[(\d+\.\d+\.\d+)\]", (REPO / "CHANGELOG.md").read_text(), re.MULTILINE)
    assert package["version"] == lock["version"] == lock["packages"][""]["version"] == VERSION
    assert released[0] == VERSION, "the newest CHANGELOG.md entry is the package's version"
    cp = subprocess.run([sys.executable, "-m", "archspec", "--version"], capture_output=True, text=True, cwd=REPO)
    assert cp.stdout.strip() == f"archspec {VERSION}"


@pytest.fixture(scope="module")
def hooks_repo(tmp_path_factory) -> tuple[Path, str]:
    """This working tree as a committed git repository (what a user's `repo:` points at), and its commit."""
    src = tmp_path_factory.mktemp("archspec-src")
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True,
                           text=True, check=True).stdout.split("\n")
    for name in filter(None, files):
        if (REPO / name).is_file() and not name.startswith("editors/vscode/node_modules/"):
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, src / name)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.org", "-C", str(src)]
    for command in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "snapshot"]):
        subprocess.run(git + command, check=True, capture_output=True)
    rev = subprocess.run(git + ["rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    return src, rev


def try_repo(hooks_repo: tuple[Path, str], project: Path, *hook: str) -> subprocess.CompletedProcess:
    src, rev = hooks_repo
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the hook's own environment, as a user's
    env["PRE_COMMIT_HOME"] = str(src.parent / "pre-commit-home")  # one environment for both runs
    return subprocess.run([sys.executable, "-m", "pre_commit", "try-repo", str(src), *hook, "--ref", rev, "--all-files"],
                          cwd=project, capture_output=True, text=True, timeout=400, env=env)


def user_project(root: Path, files: dict[str, str]) -> Path:
    root.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    for name, text in files.items():
        (root / name).write_text(text)
    subprocess.run(["git", "add", "-A"], cwd=root, check=True)
    return root


def test_pre_commit_hooks_fail_a_broken_file_and_pass_a_good_one(hooks_repo, tmp_path):
    broken = user_project(tmp_path / "broken", {"bad.arch": (EXAMPLES / "broken" / "kernel_too_large.arch").read_text()})
    cp = try_repo(hooks_repo, broken, "archspec-check")
    if cp.returncode != 0 and "Could not find a version" in cp.stdout + cp.stderr:
        pytest.skip("package index unreachable for the hook environment's dependencies")
    assert cp.returncode == 1, cp.stdout + cp.stderr
    assert "bad.arch:4:1: error[E101]: kernel 5 is larger than the padded input 4x4" in cp.stdout
    good = user_project(tmp_path / "good", {"lenet.arch": (EXAMPLES / "lenet.arch").read_text(), "notes.txt": "conv 6 k99\n"})
    cp = try_repo(hooks_repo, good)  # every hook: archspec-check, and archspec-fmt leaving a formatted file alone
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert re.search(r"archspec check\.+Passed", cp.stdout) and re.search(r"archspec fmt\.+Passed", cp.stdout)


def test_the_vscode_extension_packages_with_the_locked_tools(tmp_path):
    """`npm ci` then `npx @vscode/vsce package` (a locked dev dependency: no download) makes the .vsix the docs install."""
    npm = shutil.which("npm")
    if npm is None or not (VSCODE / "node_modules" / "@vscode" / "vsce").is_dir():
        why = "npm is not installed" if npm is None else "run `npm ci --prefix editors/vscode` first"
        if os.environ.get("CI"):
            pytest.fail(f"CI is set but {why}; .ci/run installs the extension's dependencies where npm exists")
        pytest.skip(why)
    vsix = tmp_path / "archspec.vsix"
    npx = shutil.which("npx") or "npx"
    cp = subprocess.run([npx, "--no-install", "@vscode/vsce", "package", "--out", str(vsix)], cwd=VSCODE, capture_output=True,
                        text=True, timeout=300, env={**os.environ, "npm_config_offline": "true"})
    assert cp.returncode == 0, cp.stdout + cp.stderr
    names = set(zipfile.ZipFile(vsix).namelist())
    manifest = json.loads(zipfile.ZipFile(vsix).read("extension/package.json"))
    assert manifest["version"] == VERSION
    shipped = ["extension/" + p for p in ("src/extension.js", "src/server.js", "src/view.js", "syntaxes/arch.tmLanguage.json",
                                          "language-configuration.json", "LICENSE.txt", "readme.md")]
    assert not [p for p in shipped if p not in names]
    assert "extension/node_modules/vscode-languageclient/package.json" in names  # the runtime dependency
    assert not [n for n in names if n.startswith(("extension/test/", "extension/node_modules/@vscode/vsce"))]
