"""Packages, package data and colcon's install hooks. Metadata and dependencies come from pyproject.toml.

Packages are discovered, never listed: every package under pupper_ros/ and training/ is installed, and models/ is
installed as pupper_ros.models. Package data is every file MANIFEST.in takes into those packages, so a new module
or data file cannot be left out of a wheel or a colcon install.
"""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "pupper_ros"
MODELS_PACKAGE = f"{PACKAGE}.models"

setup(
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*", "training", "training.*"])
    + [MODELS_PACKAGE]
    + [f"{MODELS_PACKAGE}.{sub}" for sub in find_packages("models")],
    package_dir={MODELS_PACKAGE: "models"},
    include_package_data=True,
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml")),
    ],
)
