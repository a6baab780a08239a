"""Packaging and dependency hygiene: one dependency list, a runtime that never loads torch or PyBullet, supported
Pythons stated where colcon can read them, and a `make run` that installs only what the demo needs. The installs
themselves (a wheel, a colcon build) are built and run in tests/test_install.py."""

import pkgutil
import re
import subprocess
import sys
import tomllib
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import pupper_ros

ROOT = Path(__file__).resolve().parents[1]
# Modules that exist to simulate; everything else in pupper_ros is runtime and must stay free of torch and PyBullet.
SIMULATION_MODULES = {"pupper_ros.backends.sim_backend"}  # and everything in pupper_ros.sim
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
        m.name for m in pkgutil.walk_packages(pupper_ros.__path__, "pupper_ros.")
        if m.name not in SIMULATION_MODULES and not m.name.startswith("pupper_ros.sim.") and m.name != "pupper_ros.sim"
    )


def project_dependencies():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [re.split(r"[<>=!~\[ ;]", d)[0].lower() for d in meta["dependencies"]]


@pytest.mark.slow
def test_runtime_imports_neither_torch_nor_a_simulator_nor_ray():
    modules = runtime_modules()
    assert "pupper_ros.policy" in modules and "pupper_ros.contract" in modules
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "heavy = sorted(k for k in sys.modules if k.split('.')[0] in ('torch', 'pybullet', 'pybullet_utils', 'mujoco', 'ray')\n"
        "               or k.startswith('pupper_ros.sim'))\n"
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


def supported_pythons() -> list[str]:
    classifiers = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["classifiers"]
    return [c.rsplit(" :: ", 1)[1] for c in classifiers if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)]


def test_supported_pythons_are_stated_where_colcon_can_read_them():
    """colcon parses setup information back as Python literals: `requires-python` reaches it as a SpecifierSet and
    breaks the build (tests/test_install.py builds with colcon). The versions are classifiers instead, a contiguous
    range that the README states and that includes the Python this suite runs on."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "requires-python" not in project
    versions = supported_pythons()
    minors = [int(v.split(".")[1]) for v in versions]
    assert minors == list(range(minors[0], minors[-1] + 1)), versions
    assert f"{sys.version_info.major}.{sys.version_info.minor}" in versions
    stated = f"Python {versions[0]}-{versions[-1]}"
    assert stated in (ROOT / "README.md").read_text(), stated


def make_dry_run(target: str, tmp_path) -> str:
    """The commands `make TARGET` would run on a fresh clone (no .venv yet)."""
    return subprocess.run(["make", "-n", "-C", str(ROOT), target, f"VENV={tmp_path / 'venv'}"], capture_output=True, text=True,
                          check=True).stdout


@pytest.mark.slow
def test_make_run_installs_the_runtime_with_ros_and_sim_and_no_torch(tmp_path):
    commands = make_dry_run("run", tmp_path)
    installs = [line for line in commands.splitlines() if "pip install" in line]
    assert any('-e ".[ros,sim]"' in line for line in installs), installs
    assert not any("torch" in line or "train" in line for line in installs), installs
    assert "import torch" not in commands


@pytest.mark.slow
def test_make_test_installs_everything(tmp_path):
    installs = [line for line in make_dry_run("test", tmp_path).splitlines() if "pip install" in line]
    assert any("torch" in line for line in installs), installs
    assert any('-e ".[ros,train,dev,ray]"' in line for line in installs), installs


@pytest.mark.parametrize("name", ["README.md", "Makefile", ".ci/run", "package.xml", "setup.py", "setup.cfg"])
def test_layout_files_exist(name):
    assert (ROOT / name).is_file()


def test_the_readme_stays_a_users_guide_and_its_links_resolve():
    """The README is the user's path (at most 250 lines); measurements and references live in docs/, and every
    relative link in the README and the docs leads to a file that exists."""
    import re

    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", page.read_text()):
            assert (page.parent / target).is_file(), f"{page.name} links to {target}, which does not exist"


def test_the_readme_layout_names_every_directory_of_the_packages_and_only_existing_ones():
    """The README's layout block is the map a new engineer reads first: each directory it names exists, and every
    directory of ``pupper_ros/`` and ``training/`` is in it."""
    import re

    readme = (ROOT / "README.md").read_text()
    block = readme.split("## Layout", 1)[1].split("```")[1]
    named, parent = set(), ""
    for line in block.splitlines():
        head = line[:23]  # the names column; the description starts at column 24
        nested = line.startswith("  ")
        for name in re.findall(r"([A-Za-z_.]+)/", head):
            path = f"{parent}{name}" if nested else name
            if not nested:
                parent = f"{name}/"
            named.add(path)
    assert named, "no layout block found"
    for path in sorted(named):
        assert (ROOT / path).is_dir(), f"the README's layout names {path}/, which does not exist"
    for package in ("pupper_ros", "training"):
        for child in sorted((ROOT / package).iterdir()):
            if child.is_dir() and child.name != "__pycache__":
                assert f"{package}/{child.name}" in named, f"{package}/{child.name}/ is missing from the README's layout"
