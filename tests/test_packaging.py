"""The design card's folders import as populace.<folder> from an editable install and a wheel."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import populace

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ["engine", "kernels", "behaviors", "populations", "calibration", "models", "benchmarks"]


def test_editable_install_maps_root_folders():
    import importlib

    for folder in FOLDERS:
        mod = importlib.import_module(f"populace.{folder}")
        assert Path(mod.__file__).resolve().parent == ROOT / folder
    assert Path(populace.__file__).resolve().parent == ROOT / "populace"


def test_kernels_do_not_import_upper_layers():
    bad = []
    for path in (ROOT / "kernels").glob("*.py"):
        text = path.read_text()
        for layer in ("engine", "behaviors", "models", "populations", "calibration"):
            if f"populace.{layer}" in text:
                bad.append(f"{path.name} imports populace.{layer}")
    assert not bad


def test_root_kernels_folder_yields_to_an_installed_kernels_package(tmp_path):
    """From the repository root, ``import kernels`` is the installed PyPI package of that name
    (transformers >= 5.25 imports Hugging Face's), not this folder; with none installed, a
    ModuleNotFoundError that names populace.kernels."""
    fake = tmp_path / "site" / "kernels"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("CUDAProperties = 'hub'\n")
    (fake / "layer.py").write_text("NAME = 'hub layer'\n")
    code = "import kernels, kernels.layer; print(kernels.CUDAProperties, kernels.layer.NAME)"
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    out = subprocess.run(
        [sys.executable, "-S", "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["hub", "hub", "layer"]

    env.pop("PYTHONPATH")
    out = subprocess.run(
        [sys.executable, "-S", "-c", "import kernels"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert out.returncode != 0
    assert "ModuleNotFoundError" in out.stderr and "populace.kernels" in out.stderr


@pytest.mark.slow
def test_wheel_contains_packages_and_imports(tmp_path):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(ROOT),
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path / "dist"),
        ],
        check=True,
    )
    (wheel,) = (tmp_path / "dist").glob("populace-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for folder in FOLDERS:
        assert f"populace/{folder}/__init__.py" in names
    assert not any(n.startswith(("engine/", "tests/")) for n in names)
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
    )
    code = (
        "import populace, populace.engine, populace.models.sir as s;"
        "print(populace.engine.__file__);"
        "m = s.build(agents=100);"
        "print(populace.Simulation(m, device='cpu').run(2).final()['S'])"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(target)},
        cwd=tmp_path,
    )
    first = proc.stdout.splitlines()[0]
    assert first.startswith(str(target))
