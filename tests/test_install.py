"""The project installed the ways its users install it, not as the editable checkout the rest of the suite runs
against: a wheel built from the checkout and pip-installed into a fresh virtual environment, and a real `colcon build`
(colcon from PyPI) into a workspace. Each install is run from another directory with nothing of the checkout on the
path, drives the simulated robot to WALKING and forward, and refuses bad input as the checkout does.

The robot computer is a fresh virtual environment holding what a robot has before it builds this package: the
runtime's dependencies, the ROS 2 wheels and PyBullet (read from the wheel's own metadata, so a dependency the
metadata forgets is missing here too) and colcon; never pupper_ros itself.

launch and launch_ros are not on PyPI, so `ros2 launch` cannot run here: walk.launch.py is checked statically in
tests/test_launch.py. What it relies on is checked here for real: the executable where launch_ros looks for it (the
package prefix from the ament index, then lib/pupper_ros), the params file from the package's share directory.
"""

from __future__ import annotations

import email
import os
import pkgutil
import shutil
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from tests.ros_helpers import WalkClient, assert_walks_forward, stop_process
from tests.shipped import ROBOTS, forward_speed_0_3

pytestmark = pytest.mark.slow  # every test here starts a process, a real-time robot or a build

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "pupper_ros"
# Source directory -> where its files are installed (models/ is installed as the package pupper_ros.models).
SOURCE_PACKAGES = {"pupper_ros": "pupper_ros", "training": "training", "models": "pupper_ros/models"}
SHARE_FILES = ["package.xml", "launch/walk.launch.py", "config/walk.yaml"]
NOT_DATA = ("__pycache__",)
NOT_DATA_SUFFIXES = (".pyc", ".pyo", ".pyd", ".onnx.tmp")  # MANIFEST.in's global-exclude
TRAINING_FILES = ("_checkpoint.pt", "_progress.csv")  # MANIFEST.in's excludes: in the repository, not on the robot
COPY_IGNORE = shutil.ignore_patterns(".venv", ".git", "build", "dist", "*.egg-info", "runs", "__pycache__",
                                     ".pytest_cache", ".hypothesis")
RUNTIME_EXTRAS = ("ros", "sim", "mujoco")  # what the daemon on a simulated robot needs, in either engine; no torch
COLCON = ["colcon-core>=0.21.3", "colcon-ros>=0.5.0", "colcon-python-setup-py>=0.2.9", "colcon-package-selection>=0.2.10"]
# Values the test process's own environment would hand down and that point into the checkout's .venv:
# ros_wheels_bootstrapper's library path and the flag that stops a child from setting its own.
INHERITED = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "LD_LIBRARY_PATH", "_ROS_WHEELS_BOOTSTRAP_COMPLETE",
             "AMENT_PREFIX_PATH", "COLCON_PREFIX_PATH", "COLCON_CURRENT_PREFIX")
BAD_INPUT = [
    (["--policy", "/nonexistent/model.onnx"], "parameter 'policy': policy /nonexistent/model.onnx: file not found"),
    (["--robot", "pupper_v9"], "parameter 'robot': unknown robot 'pupper_v9'"),
]


def run(args, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run([str(a) for a in args], capture_output=True, text=True, **kwargs)
    assert result.returncode == 0, f"{' '.join(map(str, args))} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    return result


def clean_env(**extra) -> dict:
    """The test's environment without anything that leads into the checkout or its .venv."""
    env = {k: v for k, v in os.environ.items() if k not in INHERITED}
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if not p.startswith(str(ROOT)))
    return env | extra


def site_packages(venv: Path) -> Path:
    return venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"


def make_venvs(wanted: dict[Path, list[str]]) -> None:
    """New virtual environments (from the base interpreter: nothing of .venv is visible in them), each with its
    requirements, installed side by side. --no-compile: Python compiles what it imports when it imports it."""
    installs = []
    for path, requirements in wanted.items():
        run([sys.executable, "-m", "venv", path])
        installs.append(subprocess.Popen([path / "bin" / "python", "-m", "pip", "install", "-q", "--no-compile",
                                          "--disable-pip-version-check", *requirements],
                                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    for proc in installs:
        output = proc.communicate()[0]
        assert proc.returncode == 0, output


def source_files() -> set[str]:
    """Every module and data file of the source tree, as the install path it should have."""
    files = set()
    for source, installed in SOURCE_PACKAGES.items():
        for path in (ROOT / source).rglob("*"):
            rel = path.relative_to(ROOT / source)
            if (path.is_file() and not any(part in NOT_DATA for part in rel.parts)
                    and not path.name.endswith(NOT_DATA_SUFFIXES + TRAINING_FILES)):
                files.add(f"{installed}/{rel.as_posix()}")
    return files


def installed_files(site: Path) -> set[str]:
    return {p.relative_to(site).as_posix() for top in ("pupper_ros", "training") for p in (site / top).rglob("*")
            if p.is_file() and "__pycache__" not in p.parts}


def copy_checkout(dest: Path) -> Path:
    shutil.copytree(ROOT, dest, ignore=COPY_IGNORE)
    return dest


def wheel_requirements(wheel: Path, extras) -> list[str]:
    """The wheel's own Requires-Dist for the runtime and the given extras, markers resolved."""
    with zipfile.ZipFile(wheel) as z:
        metadata = email.message_from_bytes(z.read(next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))))
    wanted = []
    for line in metadata.get_all("Requires-Dist"):
        req = Requirement(line)
        if req.name == PACKAGE:  # an extra naming another extra of this package (train -> pupper_ros[sim])
            continue
        if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in extras):
            wanted.append(f"{req.name}{req.specifier}")
    return wanted


# --- the installs ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """`pip wheel` of a copy of the checkout (setuptools leaves build/ behind in the tree it builds)."""
    src = copy_checkout(tmp_path_factory.mktemp("wheel-src") / PACKAGE)
    out = tmp_path_factory.mktemp("wheel")
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "--disable-pip-version-check", "-w", out, src])
    (built,) = out.glob(f"{PACKAGE}-*.whl")
    return built


@pytest.fixture(scope="module")
def venvs(wheel, tmp_path_factory) -> dict[str, Path]:
    """"user": what a user gets from `pip install pupper_ros-<version>.whl[ros,sim,mujoco]` in a new virtual
    environment; "robot": a robot computer's Python before it builds this package (the dependencies and colcon, no
    pupper_ros). Built side by side: one after the other they were most of this file's time."""
    user, robot = tmp_path_factory.mktemp("user") / "venv", tmp_path_factory.mktemp("robot") / "venv"
    make_venvs({user: [f"{wheel}[{','.join(RUNTIME_EXTRAS)}]"], robot: wheel_requirements(wheel, RUNTIME_EXTRAS) + COLCON})
    return {"user": user, "robot": robot}


@pytest.fixture(scope="module")
def wheel_venv(venvs) -> Path:
    return venvs["user"]


@pytest.fixture(scope="module")
def robot_venv(venvs) -> Path:
    return venvs["robot"]


def colcon_build(robot_venv: Path, workspace: Path) -> subprocess.CompletedProcess:
    env = clean_env(PATH=f"{robot_venv / 'bin'}{os.pathsep}{clean_env()['PATH']}")
    return run([robot_venv / "bin" / "colcon", "build", "--packages-select", PACKAGE], cwd=workspace, env=env)


@pytest.fixture(scope="module")
def colcon_workspace(robot_venv, tmp_path_factory) -> Path:
    workspace = tmp_path_factory.mktemp("ws")
    copy_checkout(workspace / "src" / PACKAGE)
    colcon_build(robot_venv, workspace)
    return workspace


def sourced(command: str, *args: str) -> list[str]:
    """`command args` in a shell that has sourced $WORKSPACE/install/setup.sh, as a user's shell on the robot.
    `$PACKAGE_PREFIX` in `command` is the package's prefix as the ament index reports it (what launch_ros and
    `ros2 run` read)."""
    script = ('. "$WORKSPACE/install/setup.sh" || exit 90\n'
              'PACKAGE_PREFIX="$(python3 -c \'from ament_index_python.packages import get_package_prefix as p; '
              f'print(p("{PACKAGE}"))\')" || exit 91\n'
              f'exec {command} "$@"\n')
    return ["sh", "-c", script, "sh", *args]


def colcon_env(robot_venv: Path, workspace: Path, **extra) -> dict:
    return clean_env(PATH=f"{robot_venv / 'bin'}{os.pathsep}{clean_env()['PATH']}", WORKSPACE=str(workspace), **extra)


@pytest.fixture(scope="module")
def installs(wheel_venv, robot_venv, colcon_workspace):
    """How each install starts its `pupper-walk` with some arguments: (argv, environment). The colcon install starts
    it as walk.launch.py does: the executable from lib/pupper_ros of the package's prefix, with the params file from
    its share directory."""
    colcon_walk = (f'"$PACKAGE_PREFIX/lib/{PACKAGE}/pupper-walk" '
                   f'--ros-args --params-file "$PACKAGE_PREFIX/share/{PACKAGE}/config/walk.yaml" --')
    return {
        "wheel": lambda *args: ([str(wheel_venv / "bin" / "pupper-walk"), *args], clean_env()),
        "colcon": lambda *args: (sourced(colcon_walk, *args), colcon_env(robot_venv, colcon_workspace)),
    }


# --- what is installed -------------------------------------------------------------------------------------------


def test_the_wheel_install_holds_every_module_and_data_file_of_the_source_tree(wheel_venv, colcon_workspace):
    site = site_packages(wheel_venv)
    assert installed_files(site) == source_files()
    colcon = installed_files(site_packages(colcon_workspace / "install" / PACKAGE))
    for files in (installed_files(site), colcon):  # the robot installs what it runs: no checkpoint, no training log
        assert not [f for f in files if f.endswith(TRAINING_FILES)]
    assert list((ROOT / "models").glob("*_checkpoint.pt"))  # while the repository keeps them for --resume
    for name in SHARE_FILES:  # data_files land under the environment's prefix
        assert (wheel_venv / "share" / PACKAGE / name).is_file(), name


def test_the_colcon_install_holds_what_ros2_run_and_launch_look_for(colcon_workspace):
    prefix = colcon_workspace / "install" / PACKAGE
    executable = prefix / "lib" / PACKAGE / "pupper-walk"
    assert executable.is_file() and os.access(executable, os.X_OK)
    for name in SHARE_FILES:
        assert (prefix / "share" / PACKAGE / name).is_file(), name
    assert (prefix / "share" / "ament_index" / "resource_index" / "packages" / PACKAGE).is_file()
    assert installed_files(site_packages(prefix)) == source_files()


def test_the_installs_import_nothing_from_the_checkout(wheel_venv, robot_venv, colcon_workspace, tmp_path):
    """Every runtime module imports from the install (training needs torch, which neither install has), the robot's
    data is found there, and no entry of sys.path leads into the checkout."""
    import json

    code = (
        "import json, pkgutil, sys, importlib\n"
        "import pupper_ros\n"
        "from pupper_ros import resources\n"
        "names = [m.name for m in pkgutil.walk_packages(pupper_ros.__path__, 'pupper_ros.')]\n"
        "files = [importlib.import_module(n).__file__ for n in names]\n"
        "data = [str(f(r)) for r in resources.available_robots()\n"
        "        for f in (resources.robot_profile_path, resources.default_policy_path)]\n"
        "print(json.dumps({'files': files, 'data': data, 'path': sys.path, 'names': names}))\n"
    )
    colcon_site = site_packages(colcon_workspace / "install" / PACKAGE)
    runs = {
        site_packages(wheel_venv): run([wheel_venv / "bin" / "python", "-c", code], cwd=tmp_path, env=clean_env()),
        colcon_site: run(sourced("python3", "-c", code), cwd=tmp_path,
                         env=colcon_env(robot_venv, colcon_workspace)),
    }
    expected = {m.name for m in pkgutil.walk_packages([str(ROOT / PACKAGE)], f"{PACKAGE}.")}
    for site, result in runs.items():
        seen = json.loads(result.stdout)
        assert set(seen["names"]) >= expected, f"missing from {site}: {expected - set(seen['names'])}"
        assert len(seen["data"]) == 2 * len(ROBOTS), seen["data"]  # each robot's profile and default policy
        for path in seen["files"] + seen["data"]:
            assert path.startswith(str(site)), f"{path} is not from the install at {site}"
            assert Path(path).is_file()
        assert not [p for p in seen["path"] if p.startswith(str(ROOT))], seen["path"]


# --- what the installs do ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("install", ["wheel", "colcon"])
def test_the_installed_daemon_walks_the_simulated_robot_forward(install, installs, ros, tmp_path):
    argv, env = installs[install]("--backend", "sim")
    proc = subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        watch = WalkClient(ros)
        if not watch.wait_state("WALKING", 60):
            proc.kill()
            pytest.fail(f"states {watch.states}; the installed pupper-walk said:\n{proc.communicate()[0]}")
        assert_walks_forward(watch, forward_speed_0_3())
        assert stop_process(proc, signal.SIGTERM) == 0, proc.communicate()[0]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("args, message", BAD_INPUT, ids=["missing policy", "unknown robot"])
@pytest.mark.parametrize("install", ["wheel", "colcon"])
def test_the_installed_daemon_refuses_bad_input_as_the_checkout_does(install, installs, args, message, tmp_path):
    argv, env = installs[install]("--backend", "sim", *args)
    result = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("install", ["wheel", "colcon"])
def test_the_installed_preflight_runs_and_names_an_absent_robot(install, wheel_venv, robot_venv, colcon_workspace, tmp_path):
    """pupper-preflight from each install (the robot's first command) reads its profile and URDF from the install
    and says plainly that there is no robot on the port."""
    args = ("--backend", "serial", "--port", str(tmp_path / "no-such-tty"))
    if install == "wheel":
        argv, env = [str(wheel_venv / "bin" / "pupper-preflight"), *args], clean_env()
    else:
        argv, env = sourced(f'"$PACKAGE_PREFIX/lib/{PACKAGE}/pupper-preflight"', *args), colcon_env(robot_venv, colcon_workspace)
    result = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "no such device" in result.stdout and "Traceback" not in result.stderr


def test_colcon_builds_in_a_path_with_spaces_and_rebuilds_after_a_change(robot_venv, tmp_path):
    """colcon's own generated setup.sh cannot find its prefix in a path with spaces (it assigns it unquoted) and says
    to set COLCON_CURRENT_PREFIX, which is what a user there does; the package itself builds and installs."""
    workspace = tmp_path / "my workspace"
    source = copy_checkout(workspace / "src" / PACKAGE)
    colcon_build(robot_venv, workspace)
    added = source / PACKAGE / "added_after_first_build"  # a new subpackage with a data file: nothing lists either
    added.mkdir()
    (added / "__init__.py").write_text("MARKER = 'rebuilt'\n")
    (added / "table.yaml").write_text("rebuilt: true\n")
    colcon_build(robot_venv, workspace)
    site = site_packages(workspace / "install" / PACKAGE)
    assert (site / PACKAGE / "added_after_first_build" / "table.yaml").is_file()
    code = ("from pupper_ros.added_after_first_build import MARKER; from pupper_ros import resources; "
            "from pupper_ros.robot_profile import load_robot_profile; p = load_robot_profile(); "
            "print(MARKER); print(resources.default_policy_path()); print(p.urdf_path)")
    env = colcon_env(robot_venv, workspace, COLCON_CURRENT_PREFIX=str(workspace / "install"))
    out = run(sourced("python3", "-c", code), cwd=tmp_path, env=env).stdout.split("\n")
    assert out[0] == "rebuilt"
    assert all(line.startswith(str(site)) and Path(line).is_file() for line in out[1:3]), out
