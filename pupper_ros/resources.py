"""Where the installed package keeps its robot descriptions and shipped policies.

The files are package data (``pupper_ros.robots``, ``pupper_ros.models``), so the same lookup works from a source
checkout, an editable install, a wheel and a colcon install.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

DEFAULT_ROBOT = "pupper_v3"


def _package_dir(package: str) -> Path:
    return Path(str(resources.files(package)))


def robots_dir() -> Path:
    return _package_dir("pupper_ros.robots")


def models_dir() -> Path:
    return _package_dir("pupper_ros.models")


def robot_profile_path(robot: str = DEFAULT_ROBOT) -> Path:
    return robots_dir() / f"{robot}.yaml"


def available_robots() -> list[str]:
    return sorted(p.stem for p in robots_dir().glob("*.yaml"))


def default_policy_path(robot: str = DEFAULT_ROBOT) -> Path:
    """The shipped walking policy for ``robot`` (it may not exist for every robot)."""
    return models_dir() / f"{robot}_walk.onnx"
