"""The backend interface the control loop drives."""

from __future__ import annotations

from abc import ABC, abstractmethod

from pupper_ros.backends.io import JointCommand, SensorSample


class BackendError(RuntimeError):
    """The robot link failed (port gone, simulator died); the supervisor turns it into DAMPING."""


class BackendParameterError(ValueError):
    """A backend that cannot be made from a parameter's value; ``parameter`` names it (assembly reports it as the
    parameter's error)."""

    def __init__(self, parameter: str, problem: str):
        self.parameter, self.problem = parameter, problem
        super().__init__(problem)


class Backend(ABC):
    """``open`` once, then per tick ``latest_sample`` and ``write``; ``close`` always leaves the motors damped or idle."""

    #: Whether the control loop must advance the backend's time itself (a simulator in lock-step).
    lockstep: bool = False
    #: Whether the node publishes this backend's readings on /joint_states and /imu/data (not when the robot's own
    #: broadcasters already do).
    publishes_sensors: bool = True

    @classmethod
    def from_parameters(cls, profile, control_period: float, values: dict, context=None) -> "Backend":
        """This backend configured from the daemon's parameter values (``pupper_ros.parameters``); ``context`` is
        the node's ROS context, for a backend that talks ROS. Raises ``BackendParameterError`` naming a bad value."""
        raise NotImplementedError(f"{cls.__name__} is not made from parameters")

    @abstractmethod
    def open(self) -> None: ...

    @abstractmethod
    def latest_sample(self, now: float) -> SensorSample | None:
        """The newest sensor sample, stamped on the control loop's clock; never blocks. The object returned keeps
        its values until the next ``latest_sample`` call (``write`` does not change it): the recorder and telemetry
        read the sample a tick used after the tick."""

    @abstractmethod
    def write(self, command: JointCommand, now: float) -> None:
        """Send a joint command; never blocks for long. Raises BackendError when the link is gone."""

    @abstractmethod
    def close(self) -> None:
        """Leave the motors damped (or idle) and release the link; safe to call twice."""

    #: What ``close`` left on the robot, as far as the link can tell (for the log).
    stop_report: str = ""

    def problem(self) -> str:
        """Why the link cannot be trusted right now ("" when it can); never blocks."""
        return ""

    def verify(self) -> str:
        """Like ``problem``, but checked afresh where the link can (it may take a round trip); called before
        activation and before a fault is cleared."""
        return self.problem()

    def abandon(self) -> None:
        """A configure that failed after ``open``: put back whatever ``open`` changed on the robot, then close."""
        self.close()

    def diagnostics(self) -> dict[str, str]:
        return {}

    def message_times(self) -> dict[str, list[float]]:
        """Per sensor stream, the arrival times (time.monotonic) of its newest valid messages (for rates)."""
        return {}

    def ground_truth(self):
        """(position xyz, orientation xyzw, linear velocity world, angular velocity world), or None off simulation."""
        return None
