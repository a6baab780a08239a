"""The runtime put together from parameter values, in one place: loop timing, supervisor, backend, controller, loop.

The daemon, replay, the benchmarks and the tests build their runtime here, so a rule (the control rate must be a whole
multiple of the policy's; the safety limits from the parameters; which backend class and how it is configured) has
one implementation. ``values`` maps every parameter of ``pupper_ros.parameters`` to its value; ``parameter_values``
gives the daemon's defaults with some overridden.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pupper_ros.backends import Backend, BackendParameterError, backend_class
from pupper_ros.control_loop import ControlLoop
from pupper_ros.controller import Controller
from pupper_ros.parameters import PARAMETERS, ParameterError, safety_limits
from pupper_ros.policy import OnnxPolicy
from pupper_ros.robot_profile import RobotProfile
from pupper_ros.safety import SafetySupervisor


def parameter_values(**overrides) -> dict:
    """The daemon's parameter values: every default, with ``overrides``; an unknown name is refused."""
    values = {p.name: p.default for p in PARAMETERS}
    unknown = sorted(set(overrides) - set(values))
    if unknown:
        raise ParameterError(unknown[0], "no such parameter")
    return values | overrides


@dataclass(frozen=True)
class LoopTiming:
    period: float  # s between control ticks
    ticks_per_policy_step: int


def loop_timing(policy_rate_hz: float, control_rate_hz: float = 0.0) -> LoopTiming:
    """The loop's period and how many ticks each policy step lasts; ``control_rate_hz`` 0 is the policy's own rate,
    and any other must be a whole multiple of it."""
    rate = control_rate_hz or policy_rate_hz
    if not (rate > 0 and math.isfinite(rate)):
        raise ParameterError("control_rate", "", f"parameter 'control_rate' must be positive, got {rate}")
    ratio = rate / policy_rate_hz
    if abs(ratio - round(ratio)) > 1e-6 or round(ratio) < 1:
        raise ParameterError("control_rate", "", f"parameter 'control_rate' {rate} Hz must be a whole multiple of the "
                             f"policy's {policy_rate_hz} Hz")
    return LoopTiming(1.0 / rate, round(ratio))


def build_supervisor(profile: RobotProfile, policy: OnnxPolicy, values: dict, period: float) -> SafetySupervisor:
    try:
        limits = safety_limits(values, profile, period)
        return SafetySupervisor(profile, limits, policy.info.command_low, policy.info.command_high)
    except ParameterError:
        raise
    except ValueError as exc:  # SafetyLimits.validate names the limit first
        raise ParameterError(str(exc).split()[0], str(exc)) from exc


def build_backend(profile: RobotProfile, period: float, values: dict, context=None) -> Backend:
    """The backend the ``backend`` parameter names, configured from ``values`` by its own ``from_parameters``."""
    try:
        cls = backend_class(values["backend"])
    except ValueError as exc:
        raise ParameterError("backend", str(exc)) from exc
    try:
        return cls.from_parameters(profile, period, values, context=context)
    except BackendParameterError as exc:
        raise ParameterError(exc.parameter, exc.problem) from exc


@dataclass
class Runtime:
    timing: LoopTiming
    supervisor: SafetySupervisor
    backend: Backend
    controller: Controller
    loop: ControlLoop


def assemble(profile: RobotProfile, policy: OnnxPolicy, values: dict, *, backend: Backend | None = None,
             context=None, on_tick=None) -> Runtime:
    """Everything between the policy and the robot, from ``values``. ``backend``: one already made (a test's or a
    benchmark's stand-in); otherwise the ``backend`` parameter's, opened here. Raises ``ParameterError`` naming
    the parameter at fault, or the backend's error if it cannot open."""
    timing = loop_timing(policy.contract.control_rate_hz, values["control_rate"])
    supervisor = build_supervisor(profile, policy, values, timing.period)
    if backend is None:
        backend = build_backend(profile, timing.period, values, context)
        try:
            backend.open()
        except BackendParameterError as exc:
            raise ParameterError(exc.parameter, exc.problem) from exc
    controller = Controller(profile, policy, supervisor, backend, timing.ticks_per_policy_step)
    loop = ControlLoop(controller, timing.period, lockstep=backend.lockstep, on_tick=on_tick)
    return Runtime(timing, supervisor, backend, controller, loop)
