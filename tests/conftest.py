import os

# Each test run gets its own ROS 2 domain on loopback only, so parallel runs and other machines never cross-talk;
# under pytest-xdist (make test runs two workers) each worker takes the next domains after the run's own.
os.environ.setdefault("ROS_DOMAIN_ID", str(10 + os.getpid() % 90))
if os.environ.get("PYTEST_XDIST_WORKER", "").startswith("gw") and "PUPPER_RUN_DOMAIN_ID" not in os.environ:
    os.environ["PUPPER_RUN_DOMAIN_ID"] = os.environ["ROS_DOMAIN_ID"]
    worker = int(os.environ["PYTEST_XDIST_WORKER"][2:])
    os.environ["ROS_DOMAIN_ID"] = str((int(os.environ["ROS_DOMAIN_ID"]) + 1 + worker) % 101)
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")

import pytest  # noqa: E402

from pupper_ros.robot_profile import load_robot_profile  # noqa: E402


FAST_LANE = os.environ.get("PUPPER_FAST_LANE") == "1"  # make check: `-m "not slow"`, and no process may start


@pytest.fixture(autouse=True)
def _fast_lane_starts_no_process(monkeypatch, request):
    """In the fast lane a test that starts a process fails, naming the marker it needs: what is fast is decided by
    the markers, and this keeps them honest."""
    if not FAST_LANE:
        return
    import multiprocessing.process
    import subprocess

    def refuse(*args, **kwargs):
        raise AssertionError(f"{request.node.nodeid} starts a process: mark it @pytest.mark.slow")

    monkeypatch.setattr(subprocess.Popen, "__init__", refuse)
    monkeypatch.setattr(multiprocessing.process.BaseProcess, "start", refuse)


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
