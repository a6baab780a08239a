"""The real-time control loop fails closed: an exception anywhere in an iteration latches DAMPING and damping keeps
going out; a watchdog outside the control thread damps a loop that hangs or dies. The loop runs for real (its own
thread, the wall clock) around a real Controller, supervisor and ONNX policy; the backend is a recording double, so
the test sees every command and which thread wrote it."""

import threading
import time

import numpy as np
import pytest

from pupper_ros.backends.backend import Backend
from pupper_ros.control_loop import ControlLoop
from pupper_ros.controller import Controller
from pupper_ros.policy import load_policy
from pupper_ros.backends.io import SensorSample
from pupper_ros.safety import SafetyLimits, SafetySupervisor, State
from tests.policies import standing_network, write_policy
from tests.ros_helpers import EVENTUALLY_S, wait_until

PERIOD = 0.02
WATCHDOG_S = 0.2


class RecordingBackend(Backend):
    """Healthy sensors stamped now; every write kept as (thread name, kp). ``hang`` makes the next sensor read block
    (inside the controller's lock, as a stuck driver call would) until ``release``."""

    def __init__(self, profile):
        n = profile.num_joints
        self.sample = SensorSample(0.0, profile.default_pose.copy(), np.zeros(n), np.array([0, 0, 0, 1.0]), np.zeros(3))
        self.writes: list[tuple[str, float]] = []
        self._hang = threading.Event()
        self._released = threading.Event()

    def open(self):
        pass

    def latest_sample(self, now):
        if self._hang.is_set():
            self._released.wait(30.0)
        self.sample.stamp = now
        return self.sample

    def write(self, command, now):
        self.writes.append((threading.current_thread().name, float(command.kp.max())))

    def close(self):
        pass

    def hang(self):
        self._hang.set()

    def release(self):
        self._hang.clear()
        self._released.set()

    def damping_writes(self, thread: str | None = None) -> int:
        return sum(1 for name, kp in self.writes if kp == 0.0 and (thread is None or name == thread))


@pytest.fixture(scope="module")
def policy(tmp_path_factory, profile):
    return load_policy(write_policy(tmp_path_factory.mktemp("loop") / "stand.onnx", profile, standing_network()), profile)


@pytest.fixture
def running(profile, policy):
    """A real-time loop standing the robot up; yields (loop, backend); stopped and released afterwards."""
    limits = SafetyLimits(control_period=PERIOD, soft_start_duration=0.2, fade_in_duration=0.2, watchdog_timeout=WATCHDOG_S)
    supervisor = SafetySupervisor(profile, limits, policy.info.command_low, policy.info.command_high)
    backend = RecordingBackend(profile)
    controller = Controller(profile, policy, supervisor, backend, 1)
    loop = ControlLoop(controller, PERIOD)
    assert controller.activate(time.monotonic())
    loop.start()
    yield loop, backend
    backend.release()
    loop.stop()


def test_an_exception_in_the_per_tick_callback_latches_damping_and_damping_keeps_going_out(running):
    """Finding 3 of the fail-closed review: a callback that raised on its 5th call ended the thread silently, with
    the last walking command left on the robot."""
    loop, backend = running
    calls = []

    def on_tick(now, controller):
        calls.append(now)
        if len(calls) == 5:
            raise RuntimeError("telemetry broke")

    loop.on_tick = on_tick
    supervisor = loop.controller.supervisor
    assert wait_until(lambda: supervisor.state == State.DAMPING)
    assert supervisor.fault_reason == "control loop failed: RuntimeError: telemetry broke"
    assert backend.damping_writes("pupper-control") >= 1
    after = len(backend.writes)
    assert wait_until(lambda: backend.damping_writes("pupper-control") > after)  # the loop lives on, damping
    assert loop.running and backend.writes[-1][1] == 0.0


def test_the_watchdog_damps_a_tick_that_hangs_holding_the_lock(running):
    loop, backend = running
    supervisor = loop.controller.supervisor
    assert wait_until(lambda: supervisor.state == State.WALKING)
    backend.hang()
    assert wait_until(lambda: backend.damping_writes("pupper-watchdog") >= 1, EVENTUALLY_S)
    assert supervisor.state == State.DAMPING and supervisor.fault_reason.startswith("control loop stalled")
    assert loop.watchdog.trips == 1
    backend.release()  # the tick returns; the loop goes on in DAMPING, latched
    count = len(backend.writes)
    assert wait_until(lambda: len(backend.writes) > count + 3)
    assert supervisor.state == State.DAMPING and backend.writes[-1] == ("pupper-control", 0.0)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_the_watchdog_damps_a_control_thread_that_died(running):
    """What no except clause in the thread can catch (here SystemExit raised inside it) still ends in damping."""
    loop, backend = running
    supervisor = loop.controller.supervisor
    assert wait_until(lambda: supervisor.state == State.WALKING)

    def die(now, controller):
        raise SystemExit("thread killed")

    loop.on_tick = die
    assert wait_until(lambda: not loop.running)
    assert wait_until(lambda: backend.damping_writes("pupper-watchdog") >= 1, EVENTUALLY_S)
    assert supervisor.state == State.DAMPING and "stalled" in supervisor.fault_reason
    writes = backend.damping_writes("pupper-watchdog")
    assert wait_until(lambda: backend.damping_writes("pupper-watchdog") > writes)  # repeated while it lasts


def test_a_watchdog_shorter_than_two_periods_is_refused(profile, policy):
    with pytest.raises(ValueError, match="watchdog_timeout must be at least two control periods"):
        SafetyLimits(control_period=PERIOD, watchdog_timeout=0.03).validate(profile)
