"""Install modes and dependency hygiene: the package and its data are found from a wheel and from a colcon-style
install (not only from the source tree), one dependency list, and a runtime that never loads torch or PyBullet."""

import pkgutil
import re
import shutil
import subprocess
import sys
import tomllib
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import pytest

import pupper_ros

ROOT = Path(__file__).resolve().parents[1]
# Modules that exist to simulate; everything else in pupper_ros is runtime and must stay free of torch and PyBullet.
SIMULATION_MODULES = {"pupper_ros.simulation", "pupper_ros.backends.sim_backend", "pupper_ros.firmware_emulator"}
# pip distribution -> rosdep key in package.xml
ROSDEP_KEYS = {
    "numpy": "python3-numpy",
    "pyyaml": "python3-yaml",
    "onnx": "python3-onnx-pip",
    "onnxruntime": "python3-onnxruntime-pip",
    "pyserial": "python3-serial",
    "msgpack": "python3-msgpack",
}


def runtime_modules():
    return sorted(
        m.name for m in pkgutil.walk_packages(pupper_ros.__path__, "pupper_ros.") if m.name not in SIMULATION_MODULES
    )


def project_dependencies():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [re.split(r"[<>=!~\[ ;]", d)[0].lower() for d in meta["dependencies"]]


def test_runtime_imports_neither_torch_nor_pybullet():
    modules = runtime_modules()
    assert "pupper_ros.policy" in modules and "pupper_ros.contract" in modules
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "heavy = sorted(k for k in sys.modules if k.split('.')[0] in ('torch', 'pybullet', 'pybullet_utils'))\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"runtime imported {out}"


def test_package_xml_declares_the_runtime_dependencies_of_pyproject():
    root = ET.parse(ROOT / "package.xml").getroot()
    assert root.get("format") == "3"
    assert root.find("export/build_type").text == "ament_python"
    exec_depends = {e.text for e in root.findall("exec_depend")}
    python_keys = {d for d in exec_depends if d.startswith("python3-")}
    expected = {ROSDEP_KEYS[d] for d in project_dependencies()}
    assert python_keys == expected
    assert not any(k in exec_depends for k in ("python3-torch", "python3-pybullet"))


def test_setup_cfg_puts_executables_where_ros2_run_finds_them():
    text = (ROOT / "setup.cfg").read_text()
    assert "script_dir=$base/lib/pupper_ros" in text
    assert "install_scripts=$base/lib/pupper_ros" in text
    assert (ROOT / "resource" / "pupper_ros").is_file()


def _find_data_from(site_dir: Path, cwd: Path) -> str:
    code = (
        "from pupper_ros import resources\n"
        "from pupper_ros.robot_profile import load_robot_profile\n"
        "p = load_robot_profile()\n"
        "print(resources.robot_profile_path()); print(p.urdf_path); print(resources.models_dir())\n"
    )
    return subprocess.run([sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(site_dir)!r})\n" + code],
                          capture_output=True, text=True, check=True, cwd=cwd).stdout


def test_colcon_style_install_has_share_files_and_finds_robot_data(tmp_path):
    # What colcon's ament_python build does: setup.py build + install into a prefix.
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".venv", ".git", "build", "*.egg-info", "runs", "__pycache__"))
    prefix = tmp_path / "install"
    subprocess.run([sys.executable, "setup.py", "-q", "build", "--build-base", str(tmp_path / "build"), "install",
                    "--prefix", str(prefix), "--single-version-externally-managed", "--record", str(tmp_path / "rec")],
                   cwd=src, check=True, capture_output=True)
    assert (prefix / "share/ament_index/resource_index/packages/pupper_ros").is_file()
    assert (prefix / "share/pupper_ros/package.xml").is_file()
    site = next(prefix.glob("lib/python3*/site-packages"))
    assert (site / "pupper_ros/robots/pupper_v3.urdf").is_file()
    assert (site / "pupper_ros/models/__init__.py").is_file()
    shutil.rmtree(src)  # the install must not lean on the source tree
    out = _find_data_from(site, tmp_path)
    assert all(line.startswith(str(site)) for line in out.split()), out


def test_wheel_carries_robot_data_and_models(tmp_path):
    src = tmp_path / "src"  # build from a copy: setuptools leaves a build/ directory behind
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".venv", ".git", "build", "*.egg-info", "runs", "__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path), str(src)], check=True, capture_output=True)
    wheel = next(tmp_path.glob("pupper_ros-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "pupper_ros/robots/pupper_v3.urdf" in names
    assert "pupper_ros/robots/pupper_v3.yaml" in names
    assert "pupper_ros/robots/pupper_v2.urdf" in names
    assert "pupper_ros/models/__init__.py" in names
    shipped = {p.name for p in (ROOT / "models").glob("*.onnx")}
    assert {n.split("/")[-1] for n in names if n.endswith(".onnx")} == shipped
    extracted = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(extracted)
    out = _find_data_from(extracted, tmp_path)
    assert all(line.startswith(str(extracted)) for line in out.split()), out


@pytest.mark.parametrize("name", ["README.md", "Makefile", ".ci/run", "package.xml", "setup.py", "setup.cfg"])
def test_layout_files_exist(name):
    assert (ROOT / name).is_file()
