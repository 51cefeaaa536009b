"""Packaging: the folders on disk, pyproject's package list and the installed distribution agree.

twinpass is one distribution: the package ``twinpass`` (the folder ``twinpass/``: the public
API, imported lazily) and its sub-packages, the other top-level folders (``runtime/``,
``kernels/``, ...), installed under it through setuptools' ``package-dir``. The failure
modes checked here are silent ones: a sub-package missing from ``[tool.setuptools] packages``
still imports under an editable install but is absent from the wheel; a generic top-level
module (``runtime``, ``cli``) installed into site-packages; tests importing the working
directory instead of the installed package.

The wheel test is marked slow (it builds a wheel, about 10 s); run it with
``python -m pytest -m slow tests/test_packaging.py``. With ``TWINPASS_WHEEL`` set to a built
wheel it checks that wheel instead of building one (``.ci/run`` does this).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python >= 3.11")

REPO = Path(__file__).resolve().parents[1]
NAMESPACE = "twinpass"
ENTRY_POINT = "twinpass.cli.main:main"
SKIP_DIRS = {"__pycache__"}


def _pyproject() -> dict:
    with open(REPO / "pyproject.toml", "rb") as f:
        return tomllib.load(f)


PYPROJECT = _pyproject()
SETUPTOOLS = PYPROJECT["tool"]["setuptools"]
PACKAGES: list[str] = SETUPTOOLS["packages"]
PACKAGE_DIR: dict[str, str] = SETUPTOOLS["package-dir"]
TOP = REPO / NAMESPACE  # the folder of the package `twinpass` itself (setuptools' default)
ROOTS = sorted({REPO / d for d in PACKAGE_DIR.values()})


def _folder_of(package: str) -> Path:
    """The folder setuptools takes ``package`` from: the longest mapped prefix in package-dir."""
    parts = package.split(".")
    for n in range(len(parts), 0, -1):
        key = ".".join(parts[:n])
        if key in PACKAGE_DIR:
            return REPO.joinpath(PACKAGE_DIR[key], *parts[n:])
    if "" in PACKAGE_DIR:
        return REPO.joinpath(PACKAGE_DIR[""], *parts)
    return REPO.joinpath(*parts)


def _package_of(folder: Path) -> str:
    """The package name a folder under a package root installs as (inverse of _folder_of)."""
    if folder == TOP:
        return NAMESPACE
    matches = [
        (name, folder.relative_to(REPO / d))
        for name, d in PACKAGE_DIR.items()
        if folder == REPO / d or REPO / d in folder.parents
    ]
    name, rel = max(matches, key=lambda m: len(m[0]))
    return ".".join((name, *rel.parts))


def _folders_with_modules() -> set[Path]:
    found = {TOP} if list(TOP.glob("*.py")) else set()
    for root in ROOTS:
        for path in root.rglob("*.py"):
            if not SKIP_DIRS.intersection(path.relative_to(REPO).parts):
                found.add(path.parent)
    return found


def _clean_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    return env


# --- pyproject.toml against the folders on disk ------------------------------------------------


def test_package_dir_maps_only_namespaced_packages_onto_top_level_folders() -> None:
    assert "" not in PACKAGE_DIR, "a root mapping would install top-level modules"
    for name, folder in PACKAGE_DIR.items():
        assert name.startswith(f"{NAMESPACE}."), f"package-dir key {name!r} is not under twinpass"
        assert (REPO / folder).is_dir(), f"package-dir maps {name!r} to missing folder {folder!r}"
        assert len(Path(folder).parts) == 1, f"{folder!r}: package roots are top-level folders"


def test_every_folder_with_modules_is_a_listed_package() -> None:
    listed = {_folder_of(p): p for p in PACKAGES}
    unlisted = sorted(str(f.relative_to(REPO)) for f in _folders_with_modules() if f not in listed)
    assert not unlisted, (
        f"folders with .py files missing from [tool.setuptools] packages (they would be "
        f"missing from the wheel): {unlisted}"
    )


@pytest.mark.parametrize("package", PACKAGES)
def test_every_listed_package_exists_with_init_and_py_typed(package: str) -> None:
    assert package == NAMESPACE or package.startswith(f"{NAMESPACE}."), (
        f"{package!r} is not twinpass or under it"
    )
    folder = _folder_of(package)
    rel = folder.relative_to(REPO)
    assert folder.is_dir(), f"{package} maps to {rel}/, which does not exist"
    assert (folder / "__init__.py").is_file(), f"{rel}/__init__.py is missing"
    assert (folder / "py.typed").is_file(), f"{rel}/py.typed is missing"


def test_twinpass_is_the_package_in_its_own_folder() -> None:
    assert NAMESPACE in PACKAGES
    assert NAMESPACE not in PACKAGE_DIR, "twinpass/ is found where setuptools looks by default"
    assert (TOP / "__init__.py").is_file()
    # (.venv and build/, the docs' package view, are not sources)
    others = [
        p
        for p in REPO.glob(f"*/**/{NAMESPACE}/__init__.py")
        if not {".venv", "build"} & set(p.relative_to(REPO).parts)
    ]
    assert not others, f"a second twinpass package: {others}"


# --- the installed distribution ------------------------------------------------------------------
# Looked at from a subprocess started in an empty temporary folder: from the repository root the
# in-tree `twinpass.egg-info` (left by `pip install -e .`) would shadow the installed metadata.

_PROBE = """
import importlib.metadata as md, importlib.util, json, sys
import twinpass, twinpass.kernels, twinpass.runtime
dist = md.distribution("twinpass")
print(json.dumps({
    "twinpass_file": getattr(twinpass, "__file__", None),
    "kernels_file": twinpass.kernels.__file__,
    "runtime_file": twinpass.runtime.__file__,
    "generic": {n: (s.origin or str(s.submodule_search_locations)) if s else None
                for n, s in ((n, importlib.util.find_spec(n)) for n in sys.argv[1:])},
    "version": md.version("twinpass"),
    "scripts": [[ep.name, ep.value, ep.dist.name if ep.dist else None]
                for ep in md.entry_points(group="console_scripts") if ep.name == "twinpass"],
    "files": [list(f.parts) for f in dist.files or []],
    "top_level": dist.read_text("top_level.txt"),
}))
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> dict:
    generic = sorted(
        ({Path(d).name for d in PACKAGE_DIR.values()} | {p.split(".")[-1] for p in PACKAGES})
        - {NAMESPACE}
    )
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, *generic],
        cwd=tmp_path_factory.mktemp("outside"),
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_installed_version_matches_pyproject(installed: dict) -> None:
    assert installed["version"] == PYPROJECT["project"]["version"]


def test_console_script_is_declared(installed: dict) -> None:
    assert PYPROJECT["project"]["scripts"][NAMESPACE] == ENTRY_POINT
    assert installed["scripts"] == [[NAMESPACE, ENTRY_POINT, NAMESPACE]]


def test_installed_package_imports_from_the_install_not_the_cwd(installed: dict) -> None:
    top = Path(installed["twinpass_file"])
    assert top.resolve() == (TOP / "__init__.py").resolve() or top.parent.name == NAMESPACE
    for key, folder in (("kernels_file", "kernels"), ("runtime_file", "runtime")):
        path = Path(installed[key])
        editable = path.resolve() == (REPO / folder / "__init__.py").resolve()
        installed_copy = path.name == "__init__.py" and path.parent.parts[-2:] == (
            NAMESPACE,
            folder,
        )
        assert editable or installed_copy, f"twinpass.{folder} imported from unexpected {path}"


def test_no_generic_top_level_module_is_installed(installed: dict) -> None:
    found = {n: origin for n, origin in installed["generic"].items() if origin is not None}
    assert not found, f"generic top-level modules importable outside the repository: {found}"


def test_installed_files_stay_under_the_namespace(installed: dict) -> None:
    """RECORD holds twinpass/, its dist-info, the editable hook and the script: no `runtime/`."""
    if installed["top_level"] is not None:
        assert installed["top_level"].split() == [NAMESPACE]
    stray = []
    for parts in installed["files"]:
        first, name = parts[0], parts[-1]
        if first == "..":  # console scripts, installed beside the interpreter
            ok = name.split(".")[0] == NAMESPACE
        elif first == "__pycache__":
            ok = name.startswith("__editable__")
        else:
            ok = first == NAMESPACE or first.startswith(
                (f"{NAMESPACE}-", f"__editable__.{NAMESPACE}-", f"__editable___{NAMESPACE}_")
            )
        if not ok:
            stray.append("/".join(parts))
    assert not stray, f"files installed outside the twinpass namespace: {stray}"


def test_loaded_project_modules_are_named_under_twinpass() -> None:
    """No module of this process was imported from a package folder under a generic name."""
    wrong = []
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if not file:
            continue
        path = Path(file).resolve()
        if any(root in path.parents for root in ROOTS) and not name.startswith(f"{NAMESPACE}."):
            wrong.append(f"{name} ({path.relative_to(REPO)})")
    assert not wrong, f"project modules imported outside the twinpass namespace: {wrong}"


# --- the wheel (slow) ----------------------------------------------------------------------------


def _build_wheel(out: Path) -> Path:
    """Build from a copy of the sources, so that no build/ or egg-info lands in the repo."""
    src = out / "src"
    src.mkdir()
    for f in REPO.iterdir():
        if f.is_file() and not f.name.startswith("."):
            shutil.copy2(f, src / f.name)
    ignore = shutil.ignore_patterns("__pycache__", "*.py[cod]", "*.nbi", "*.nbc")
    for root in [*ROOTS, TOP]:
        shutil.copytree(root, src / root.name, ignore=ignore)
    dist = out / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-input", "-q", "-w", dist, src],
        check=True,
        timeout=600,
        env=_clean_env(),
    )
    (wheel,) = dist.glob("*.whl")
    return wheel


@pytest.mark.slow
def test_wheel_holds_every_module_and_nothing_else(tmp_path: Path) -> None:
    given = os.environ.get("TWINPASS_WHEEL")
    wheel = Path(given) if given else _build_wheel(tmp_path)
    version = PYPROJECT["project"]["version"]
    assert wheel.name == f"{NAMESPACE}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        dist_info = f"{NAMESPACE}-{version}.dist-info/"
        entry_points = zf.read(dist_info + "entry_points.txt").decode()

    expected = set()
    for folder in _folders_with_modules() | {_folder_of(p) for p in PACKAGES}:
        prefix = "/".join(_package_of(folder).split(".")) + "/"
        expected |= {prefix + p.name for p in folder.glob("*.py")}
        expected.add(prefix + "py.typed")
    missing = sorted(expected - names)
    assert not missing, f"missing from the wheel: {missing}"

    outside = sorted(n for n in names if not n.startswith((f"{NAMESPACE}/", dist_info)))
    assert not outside, f"wheel files outside twinpass/: {outside}"
    stale = sorted(n for n in names if n.endswith(".py") and n.startswith(f"{NAMESPACE}/"))
    stale = [n for n in stale if n not in expected]
    assert not stale, (
        f"modules in the wheel that are not on disk or not in a listed package: {stale}"
    )
    junk = sorted(n for n in names if "__pycache__" in n or n.endswith((".pyc", ".nbi", ".nbc")))
    assert not junk, f"caches in the wheel: {junk}"
    assert f"{NAMESPACE}/__init__.py" in names
    assert f"{NAMESPACE} = {ENTRY_POINT}" in entry_points
    # The C firmware's sources and build scripts, for `hil --firmware c|qemu` off a checkout.
    firmware = REPO / "firmware"
    sources = {
        f"{NAMESPACE}/firmware/" + p.relative_to(firmware).as_posix()
        for p in firmware.rglob("*")
        if p.suffix in {".c", ".h", ".ld", ".sh"}
    }
    assert len(sources) > 30
    missing = sorted(sources - names)
    assert not missing, f"firmware sources missing from the wheel: {missing}"
