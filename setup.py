"""Install hooks for colcon (ament_python). Metadata and dependencies come from pyproject.toml."""

from glob import glob

from setuptools import setup

PACKAGE = "pupper_ros"

setup(
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml")),
    ],
)
