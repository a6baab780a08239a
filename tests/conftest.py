import os

# Each test run gets its own ROS 2 domain on loopback only, so parallel runs and other machines never cross-talk.
os.environ.setdefault("ROS_DOMAIN_ID", str(10 + os.getpid() % 90))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")

import pytest  # noqa: E402

from pupper_ros.robot_profile import load_robot_profile  # noqa: E402


@pytest.fixture(scope="session")
def profile():
    return load_robot_profile("pupper_v3")


@pytest.fixture
def ros():
    """A ROS 2 context of the test's own with an executor (tests/ros_helpers.py), shut down after the test."""
    from tests.ros_helpers import RosHarness

    harness = RosHarness()
    yield harness
    harness.close()
