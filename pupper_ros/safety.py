"""The safety supervisor: plain code between the policy and the motors, no ROS, no I/O.

Every tick it takes the latest sensor sample and (when the policy ran) the policy's joint targets, and writes the
command that goes out: targets inside the joint limits less a margin, changing no faster than the maximum joint
speed, gains inside the robot's maxima. It owns the state machine

    INACTIVE --activate--> STANDING_UP --(soft start, then policy fade-in)--> WALKING
    any --fault / e-stop--> DAMPING (kp 0, small kd), latched --clear_fault, sensors healthy--> STANDING_UP
    any --deactivate--> DAMPING, not latched --activate--> STANDING_UP

and fails closed: anything it cannot vouch for (stale or non-finite sensors, non-finite policy output, a fall,
repeated overruns, an e-stop, a backend error) ends in DAMPING until an operator clears it. A latched fault survives
deactivate and activate: only ``clear_fault`` (with healthy sensors) releases it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

import numpy as np

from pupper_ros.backends.io import JointCommand, SensorSample
from pupper_ros.contract import all_finite, clip_into, projected_gravity, tilt_from_gravity
from pupper_ros.robot_profile import RobotProfile


class State(str, Enum):
    INACTIVE = "INACTIVE"
    STANDING_UP = "STANDING_UP"
    WALKING = "WALKING"
    DAMPING = "DAMPING"


@dataclass(frozen=True)
class SafetyLimits:
    control_period: float  # s
    command_timeout: float = 0.5  # s without a command before it ramps to zero
    command_ramp_time: float = 0.5  # s for a timed-out command to reach zero
    soft_start_duration: float = 1.0  # s from the measured pose to the default pose
    fade_in_duration: float = 1.0  # s to blend the policy in after the soft start
    sensor_timeout: float = 0.1  # s, sample age beyond which sensors are stale
    tilt_limit: float = 0.7  # rad of body tilt that counts as a fall
    damping_kd: float = 0.1  # Nm s/rad in DAMPING
    joint_limit_margin: float = 0.05  # rad kept clear of each position limit
    # rad a joint may read past its position limit before the reading counts as an encoder fault. A Pupper v3's
    # knees rest on their stops 0.1 rad past the inset limits; a reading far beyond anything the joint can reach
    # must not become a stand-up's start pose (its first target would ask the motor for full torque).
    joint_reading_tolerance: float = 0.5
    max_joint_speed: float = 30.0  # rad/s a target may move
    max_consecutive_overruns: int = 5
    # s without a completed tick before the watchdog latches DAMPING and damps itself. For a thread that hangs or
    # died; slowness is the overrun fault's. On a shared 2-core machine a control thread was descheduled for 436 ms
    # with a training run beside it (2026-12-06), so the default leaves room for that.
    watchdog_timeout: float = 1.0
    stand_kp: float | None = None  # soft-start gains; None = the profile's
    stand_kd: float | None = None

    def validate(self, profile: RobotProfile) -> None:
        """Raise ValueError naming the first parameter that cannot be used with this robot."""
        checks = [
            ("control_period", self.control_period > 0 and math.isfinite(self.control_period), "must be positive"),
            ("command_timeout", self.command_timeout > 0, "must be positive"),
            ("command_ramp_time", self.command_ramp_time > 0, "must be positive"),
            ("soft_start_duration", self.soft_start_duration > 0, "must be positive"),
            ("fade_in_duration", self.fade_in_duration >= 0, "must be >= 0"),
            ("sensor_timeout", self.sensor_timeout > 0, "must be positive"),
            ("tilt_limit", 0 < self.tilt_limit <= math.pi / 2, "must be in (0, pi/2]"),
            ("damping_kd", 0 <= self.damping_kd <= profile.kd_max, f"must be in [0, {profile.kd_max}] (the robot's kd maximum)"),
            ("joint_limit_margin", self.joint_limit_margin >= 0, "must be >= 0"),
            ("joint_reading_tolerance", self.joint_reading_tolerance > 0, "must be positive"),
            ("max_joint_speed", 0 < self.max_joint_speed <= profile.velocity_limit, f"must be in (0, {profile.velocity_limit}]"),
            ("max_consecutive_overruns", self.max_consecutive_overruns >= 1, "must be >= 1"),
            ("watchdog_timeout", self.watchdog_timeout >= 2 * self.control_period,
             f"must be at least two control periods ({2 * self.control_period:g} s)"),
        ]
        for name, ok, why in checks:
            if not ok:
                raise ValueError(f"{name} {why}, got {getattr(self, name)!r}")
        lower = profile.lower_limits + self.joint_limit_margin
        upper = profile.upper_limits - self.joint_limit_margin
        if np.any(lower >= upper):
            raise ValueError(f"joint_limit_margin {self.joint_limit_margin} leaves no range for some joint (limits inverted)")
        outside = [profile.joints[i] for i in np.flatnonzero((profile.default_pose < lower) | (profile.default_pose > upper))]
        if outside:
            raise ValueError(f"joint_limit_margin {self.joint_limit_margin} puts the default pose of {', '.join(outside)} outside the limits")
        for name, value, maximum in (("stand_kp", self.stand_kp, profile.kp_max), ("stand_kd", self.stand_kd, profile.kd_max)):
            if value is not None and not (0 < value <= maximum):
                raise ValueError(f"{name} must be in (0, {maximum}], got {value!r}")


def joint_speed_limit(profile: RobotProfile, control_period: float, max_joint_speed: float = 0.0) -> float:
    """rad/s a joint target may move: ``max_joint_speed``, or when it is 0 (the `max_joint_speed` parameter's
    default) the robot's own: the speed at which one tick's target step alone asks the PD for the torque limit
    (torque_limit / (kp * period)), capped by the joint velocity limit.

    Why that figure: a larger step buys no more torque in that tick, it only holds the motor saturated for longer.
    Pupper v3: 3.0 Nm / (5.0 Nm/rad * 20 ms) = 30 rad/s, its velocity limit; Pupper v2: 1.7 / (4.0 * 0.02) = 21 rad/s,
    capped at its 20 rad/s. The gait needs what it was trained with: the shipped policies ask for up to 40 (v3) and
    37 (v2) rad/s (2026-12-07 and -08: the largest target step a tick, before the envelope, over 2 randomized PyBullet
    episodes of each evaluation command) and were trained behind this same envelope (the training environment applies
    ``TargetEnvelope.deployed_default``), so a lower default would change the gait they learned. The stand-up needs
    far less (its soft start moves at most a few rad/s) and starts from the measured pose (see ``TargetEnvelope``)."""
    if max_joint_speed:
        return max_joint_speed
    return min(profile.velocity_limit, profile.torque_limit / (profile.kp * control_period))


class TargetEnvelope:
    """Where joint targets may go: inside the position limits less a margin, moving at most ``max_joint_speed``.

    A target that is outside the limits (a stand-up that starts from a joint resting past its limit: a Pupper v3's
    knees rest on their stops after homing, 0.1 rad past the inset limits) may only move inward, at most one tick's
    step: it is never pulled in with a jump.

    The supervisor passes every command through it; the training environment passes every action through the same
    envelope at the node's defaults, so a policy learns on the targets it will be allowed to send.
    """

    def __init__(self, profile: RobotProfile, joint_limit_margin: float, max_joint_speed: float, control_period: float):
        self.lower = profile.lower_limits + joint_limit_margin
        self.upper = profile.upper_limits - joint_limit_margin
        self.max_step = max_joint_speed * control_period
        self._low = np.empty_like(self.lower)
        self._high = np.empty_like(self.upper)

    @classmethod
    def deployed_default(cls, profile: RobotProfile, control_period: float) -> "TargetEnvelope":
        """The envelope `pupper-walk` applies with its default parameters (see ``config/walk.yaml``)."""
        return cls(profile, SafetyLimits.joint_limit_margin, joint_speed_limit(profile, control_period), control_period)

    def step(self, desired: np.ndarray, last: np.ndarray) -> np.ndarray:
        """Move ``last`` (in place) toward ``desired`` clipped into the limits (or, for a target still outside them,
        no further out than it is), by at most one tick's step. ``desired`` is used as scratch. Works on one robot's
        targets or on a batch's ``[robots, joints]``."""
        if self._low.shape != last.shape:  # a batch: scratch of its shape, allocated once
            self._low, self._high = np.empty_like(last), np.empty_like(last)
        np.minimum(self.lower, last, out=self._low)
        np.maximum(self.upper, last, out=self._high)
        clip_into(desired, self._low, self._high, out=desired)
        np.subtract(desired, last, out=desired)
        clip_into(desired, -self.max_step, self.max_step, out=desired)
        last += desired
        return last


class SafetySupervisor:
    def __init__(self, profile: RobotProfile, limits: SafetyLimits, command_low: np.ndarray, command_high: np.ndarray):
        limits.validate(profile)
        self.profile = profile
        self.limits = limits
        n = profile.num_joints
        self._envelope = TargetEnvelope(profile, limits.joint_limit_margin, limits.max_joint_speed, limits.control_period)
        self._lower, self._upper = self._envelope.lower, self._envelope.upper
        self._default = np.clip(profile.default_pose, self._lower, self._upper)
        self._reading_low = profile.lower_limits - limits.joint_reading_tolerance
        self._reading_high = profile.upper_limits + limits.joint_reading_tolerance
        self._kp = min(profile.kp, profile.kp_max)
        self._kd = min(profile.kd, profile.kd_max)
        self._stand_kp = min(limits.stand_kp or profile.kp, profile.kp_max)
        self._stand_kd = min(limits.stand_kd or profile.kd, profile.kd_max)
        self.set_command_range(command_low, command_high)
        self.state = State.INACTIVE
        self.fault_reason = ""  # why the robot is in DAMPING: a latched fault's reason, or the orderly stop's
        self.latched_fault = ""  # set by a fault or an e-stop; only clear_fault empties it
        self.commands_rejected = 0
        self.command = np.zeros(3)  # the command the policy sees: clamped, ramped to zero when stale
        self._requested = np.zeros(3)
        self._command_stamp = -math.inf
        self._start_pose = self._default.copy()
        self._phase_time = 0.0
        self._last_target: np.ndarray | None = None
        self._consecutive_overruns = 0
        self._gravity = np.zeros(3)
        self._beyond, self._beyond_high = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
        self._scratch = np.zeros(n)
        self._blend = np.zeros(n)
        self._ramp_step = np.zeros(3)

    def set_command_range(self, command_low, command_high) -> None:
        """The velocity ranges commands are clamped to: the running policy's trained ranges."""
        self._command_low = np.asarray(command_low, dtype=np.float64)
        self._command_high = np.asarray(command_high, dtype=np.float64)
        self._command_ramp = (self._command_high - self._command_low) * self.limits.control_period / self.limits.command_ramp_time

    @property
    def standing(self) -> bool:
        """Whether the robot is asked to stand: the command in force and the last one received are both zero."""
        return not np.any(self.command) and not np.any(self._requested)

    def restart_fade_in(self) -> None:
        """A standing robot takes a newly selected policy as it took the first: blended in from the default pose over
        ``fade_in_duration`` (the soft start is not repeated). During the soft start nothing changes (the new policy
        fades in when it ends; cutting it short would pull the joints to the default pose at the speed limit), nor
        outside STANDING_UP and WALKING."""
        soft = self.limits.soft_start_duration
        if self.state == State.WALKING or (self.state == State.STANDING_UP and self._phase_time >= soft):
            self.state = State.STANDING_UP
            self._phase_time = soft

    # --- inputs from the outside world ------------------------------------------------------------------------
    def set_command(self, command, now: float) -> bool:
        """Accept a velocity command (vx, vy, yaw rate); non-finite ones are rejected and counted."""
        value = np.asarray(command, dtype=np.float64)
        if value.shape != (3,) or not np.all(np.isfinite(value)):
            self.commands_rejected += 1
            return False
        clip_into(value, self._command_low, self._command_high, out=self._requested)
        self._command_stamp = now
        return True

    def activate(self, sample: SensorSample | None) -> bool:
        """Start standing up from the measured pose (INACTIVE or after deactivate); refused while a fault is latched."""
        if self.state in (State.STANDING_UP, State.WALKING):
            return True
        if self.latched_fault:
            return False
        problem = self.sensor_problem(sample, sample.stamp if sample is not None else 0.0)
        if problem:
            self.fault(f"cannot activate: {problem}")
            return False
        self._begin_stand_up(sample)
        return True

    def deactivate(self, reason: str = "deactivated") -> None:
        """DAMPING on the operator's word; a latched fault stays latched (and stays the reason)."""
        self.state = State.DAMPING
        if not self.latched_fault:
            self.fault_reason = reason

    def fault(self, reason: str) -> None:
        """Latch DAMPING; the first reason is kept until the fault is cleared."""
        if not self.latched_fault:
            self.latched_fault = self.fault_reason = reason
        self.state = State.DAMPING

    def emergency_stop(self) -> None:
        self.fault("emergency stop")

    def clear_fault(self, sample: SensorSample | None, now: float) -> tuple[bool, str]:
        if self.state != State.DAMPING:
            return False, f"nothing to clear: state is {self.state.value}"
        problem = self.sensor_problem(sample, now)
        if problem:
            return False, f"sensors not healthy: {problem}"
        cleared = self.fault_reason
        self.latched_fault = ""
        self._begin_stand_up(sample)
        return True, f"cleared '{cleared}', standing up"

    def note_overrun(self, missed: int) -> None:
        if missed > 0:
            self._consecutive_overruns += 1
            if self._consecutive_overruns >= self.limits.max_consecutive_overruns:
                self.fault(f"control loop overran {self._consecutive_overruns} ticks in a row")
        else:
            self._consecutive_overruns = 0

    # --- the tick ---------------------------------------------------------------------------------------------
    def sensor_problem(self, sample: SensorSample | None, now: float) -> str:
        if sample is None:
            return "no sensor sample yet"
        if not sample.is_finite():
            return "non-finite sensor values"
        age = now - sample.stamp
        if age > self.limits.sensor_timeout:
            return f"sensor sample {age * 1000:.0f} ms old (limit {self.limits.sensor_timeout * 1000:.0f} ms)"
        q, beyond = sample.joint_position, self._beyond  # every tick: compared into buffers allocated once
        np.less(q, self._reading_low, out=beyond)
        np.logical_or(beyond, np.greater(q, self._reading_high, out=self._beyond_high), out=beyond)
        if beyond.any():
            i = int(np.argmax(beyond))
            return (f"joint {self.profile.joints[i]} reads {sample.joint_position[i]:.3g} rad, more than "
                    f"{self.limits.joint_reading_tolerance} rad outside its limits "
                    f"[{self.profile.lower_limits[i]:.3f}, {self.profile.upper_limits[i]:.3f}] (encoder fault)")
        projected_gravity(sample.orientation, out=self._gravity)
        tilt = tilt_from_gravity(self._gravity)
        if tilt > self.limits.tilt_limit:
            return f"body tilt {tilt:.2f} rad beyond {self.limits.tilt_limit:.2f} rad (fall)"
        return ""

    @property
    def needs_policy(self) -> bool:
        """Whether the policy's output is used this tick (fade-in and walking)."""
        return self.state == State.WALKING or (
            self.state == State.STANDING_UP
            and self._phase_time + self.limits.control_period >= self.limits.soft_start_duration
        )

    def update_command(self, now: float) -> np.ndarray:
        if now - self._command_stamp <= self.limits.command_timeout:
            self.command[:] = self._requested
        else:  # stale: ramp toward zero, so the robot slows down and stands
            clip_into(self.command, -self._command_ramp, self._command_ramp, out=self._ramp_step)
            self.command -= self._ramp_step
        return self.command

    def step(self, sample: SensorSample | None, now: float, policy_target: np.ndarray | None, out: JointCommand) -> JointCommand:
        """Write this tick's command into ``out``. ``policy_target`` is ignored unless ``needs_policy``."""
        if self.state in (State.STANDING_UP, State.WALKING):
            problem = self.sensor_problem(sample, now)
            if problem:
                self.fault(problem)
            elif self.needs_policy and (policy_target is None or not all_finite(policy_target)):
                self.fault("policy output is not finite" if policy_target is not None else "policy output missing")

        if self.state in (State.INACTIVE, State.DAMPING):
            self.damping_command(sample, out)
            return out

        dt = self.limits.control_period
        self._phase_time += dt
        soft, fade = self.limits.soft_start_duration, self.limits.fade_in_duration
        desired = self._scratch
        if self._phase_time < soft:
            alpha = self._phase_time / soft
            np.multiply(self._start_pose, 1.0 - alpha, out=desired)
            desired += alpha * self._default
            kp, kd = self._stand_kp, self._stand_kd
        else:
            alpha = 1.0 if fade <= 0 else min(1.0, (self._phase_time - soft) / fade)
            if alpha >= 1.0:
                desired[:] = policy_target
                kp, kd = self._kp, self._kd
                self.state = State.WALKING
            else:
                np.multiply(self._default, 1.0 - alpha, out=desired)
                desired += np.multiply(policy_target, alpha, out=self._blend)
                kp = self._stand_kp + alpha * (self._kp - self._stand_kp)
                kd = self._stand_kd + alpha * (self._kd - self._stand_kd)
        self._envelope.step(desired, self._last_target)
        out.position[:] = self._last_target
        out.kp[:] = min(kp, self.profile.kp_max)
        out.kd[:] = min(kd, self.profile.kd_max)
        return out

    # --- internals --------------------------------------------------------------------------------------------
    def _begin_stand_up(self, sample: SensorSample) -> None:
        self.state = State.STANDING_UP
        self.fault_reason = ""
        self._phase_time = 0.0
        self._consecutive_overruns = 0
        self._start_pose[:] = sample.joint_position  # unclipped: the envelope brings a joint past its limit in gently
        self._last_target = self._start_pose.copy()
        self.command[:] = 0.0

    def damping_command(self, sample: SensorSample | None, out: JointCommand) -> None:
        """Write DAMPING's command (kp 0, ``damping_kd``) into ``out``."""
        self._last_target = None
        if sample is not None and all_finite(sample.joint_position):
            clip_into(sample.joint_position, self._lower, self._upper, out=out.position)
        else:
            out.position[:] = self._default
        out.kp[:] = 0.0
        out.kd[:] = self.limits.damping_kd
