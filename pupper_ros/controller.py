"""One control tick, start to finish: sensors -> observation -> policy -> safety -> command.

Everything is allocated in ``__init__`` (configure time); ``tick`` only reads, computes and writes. The ROS node and
the tests drive the same ``Controller``.
"""

from __future__ import annotations

import threading
import time

import numpy as np

from pupper_ros.backends import Backend, BackendError
from pupper_ros.contract import ActionMapping, GaitClock, ObservationBuilder, all_finite, projected_gravity
from pupper_ros.policy import OnnxPolicy
from pupper_ros.robot_profile import RobotProfile
from pupper_ros.backends.io import JointCommand, SensorSample
from pupper_ros.safety import SafetySupervisor, State


class Controller:
    def __init__(self, profile: RobotProfile, policy: OnnxPolicy, supervisor: SafetySupervisor, backend: Backend,
                 ticks_per_policy_step: int):
        self.profile = profile
        self.policy = policy
        self.supervisor = supervisor
        self.backend = backend
        self.ticks_per_policy_step = ticks_per_policy_step
        contract = policy.contract
        self.builder = ObservationBuilder(contract, profile)
        self.mapping = ActionMapping(contract, profile)
        self.clock = GaitClock(contract)
        n = profile.num_joints
        self.last_action = np.zeros(n)
        self.policy_target = profile.default_pose.copy()
        self.command = JointCommand(n)
        self._damping = JointCommand(n)  # fail_closed's own: written from the watchdog thread too
        self.sample: SensorSample | None = None  # the sample the last tick used (the backend keeps it until the next)
        self._gravity = np.zeros(3)
        self._ticks = 0
        self._policy_was_needed = False
        self.last_inference_s = 0.0
        self.ran_policy = False  # whether the last tick ran the policy
        self.last_observation: np.ndarray | None = None  # the policy's last input and raw output (the recorder's)
        self.last_raw_action: np.ndarray | None = None
        self.lock = threading.Lock()  # guards the supervisor between the loop thread and ROS callbacks
        self._write_lock = threading.Lock()  # one backend write at a time (the watchdog may write too)

    def tick(self, now: float) -> JointCommand:
        """One control step. Any unexpected error inside it ends in DAMPING (fail closed), never in a dead loop."""
        try:
            return self._tick(now)
        except Exception as exc:  # noqa: BLE001 - whatever broke, the motors must get a safe command
            self.fail_closed(f"control step failed: {type(exc).__name__}: {exc}", now)
            return self.command

    def fail_closed(self, reason: str, now: float, lock_timeout: float = -1) -> bool:
        """Latch DAMPING for ``reason`` and write damping to the backend, whatever state the tick was left in."""
        return self.damp(reason, now, lock_timeout, latch=True)

    def damp(self, reason: str, now: float, lock_timeout: float = -1, latch: bool = False) -> bool:
        """DAMPING for ``reason`` (latched as a fault when ``latch``; an orderly stop otherwise) and one damping
        command written; returns whether it was written.

        Callers outside the control thread (the watchdog, a stop) give a ``lock_timeout``: a control thread stuck
        inside the supervisor or a backend call must not keep the damping command from going out, nor the caller
        from returning. Writes are serialized with the loop's, so a simulator is never stepped from two threads."""
        locked = self.lock.acquire(timeout=lock_timeout)
        try:
            if latch:
                self.supervisor.fault(reason)
            else:
                self.supervisor.deactivate(reason)
            self.supervisor.damping_command(self.sample, self._damping)
        finally:
            if locked:
                self.lock.release()
        written = False
        if self._write_lock.acquire(timeout=lock_timeout):
            try:
                self.backend.write(self._damping, now)
                written = True
            except Exception:  # noqa: BLE001 - the link itself is gone; DAMPING holds and the backend's close damps
                pass
            finally:
                self._write_lock.release()
        self.command.copy_from(self._damping)
        return written

    def _tick(self, now: float) -> JointCommand:
        with self.lock:
            sup = self.supervisor
            sample = self.backend.latest_sample(now)
            self.sample = sample
            needed = sup.needs_policy
            if needed and not self._policy_was_needed:
                self._start_policy()
            self._policy_was_needed = needed
            self.ran_policy = needed and sample is not None and self._ticks % self.ticks_per_policy_step == 0
            if self.ran_policy:
                self._run_policy(sample, sup.update_command(now))
            elif not needed:
                sup.update_command(now)
            self._ticks += 1
            sup.step(sample, now, self.policy_target if needed else None, self.command)
        try:
            with self._write_lock:
                self.backend.write(self.command, now)
        except BackendError as exc:
            with self.lock:
                sup.fault(f"backend error: {exc}")
        return self.command

    def _start_policy(self) -> None:
        self.builder.reset()
        self.clock.reset()
        self.last_action[:] = 0.0
        self._ticks = 0

    def _run_policy(self, sample: SensorSample, command: np.ndarray) -> None:
        projected_gravity(sample.orientation, out=self._gravity)
        observation = self.builder.build(
            base_angular_velocity=sample.angular_velocity,
            projected_gravity=self._gravity,
            velocity_command=command,
            gait_phase=self.clock.phase,
            joint_position=sample.joint_position,
            joint_velocity=sample.joint_velocity,
            last_action=self.last_action,
        )
        started = time.perf_counter()
        action = self.policy(observation)
        self.last_inference_s = time.perf_counter() - started
        self.last_observation, self.last_raw_action = observation, action
        if not all_finite(action):
            self.policy_target[:] = np.nan  # the supervisor faults on it
            return
        self.mapping.to_targets(action, out=self.policy_target, clipped_out=self.last_action)
        self.clock.advance()

    # --- operator actions, callable from any thread ------------------------------------------------------------
    def activate(self, now: float) -> bool:
        problem = self.backend.verify()
        with self.lock:
            if problem:
                self.supervisor.fault(f"cannot activate: robot link not healthy: {problem}")
                return False
            return self.supervisor.activate(self.backend.latest_sample(now))

    def wait_for_sensors(self, clock, timeout: float) -> bool:
        """Give a link that has just opened up to ``timeout`` s to deliver a healthy reading before activation
        (a serial link's first status frame arrives some ms after the port opens); True once it has."""
        deadline = time.monotonic() + timeout
        while True:
            now = clock()
            with self.lock:
                if not self.supervisor.sensor_problem(self.backend.latest_sample(now), now):
                    return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)

    def deactivate(self, reason: str = "deactivated", lock_timeout: float = -1) -> None:
        locked = self.lock.acquire(timeout=lock_timeout)
        try:
            self.supervisor.deactivate(reason)
        finally:
            if locked:
                self.lock.release()

    def set_command(self, command, now: float) -> bool:
        with self.lock:
            return self.supervisor.set_command(command, now)

    def select_policy(self, policy: OnnxPolicy) -> tuple[bool, str]:
        """Run ``policy`` from the next tick: from DAMPING or INACTIVE (it takes over at the next stand-up), or from a
        standing command (it is faded in from the default pose, as the first policy was). Refused while the robot
        is asked to move. The policy must share the running one's contract (observation, actions, rate)."""
        if policy.contract != self.policy.contract:
            return False, "its policy contract differs from the running policy's"
        with self.lock:
            sup = self.supervisor
            moving = sup.state in (State.STANDING_UP, State.WALKING)
            if moving and not sup.standing:
                command = ", ".join(f"{v:.2f}" for v in sup.command)
                return False, (f"the robot is asked to move (command {command}); send a zero /cmd_vel and wait for it "
                               "to stand first")
            self.policy = policy
            sup.set_command_range(policy.info.command_low, policy.info.command_high)
            self._start_policy()
            if moving:
                sup.restart_fade_in()
                self._policy_was_needed = sup.needs_policy
            return True, "fading in from the default pose" if moving else f"takes over at the next stand-up ({sup.state.value})"

    def emergency_stop(self) -> None:
        with self.lock:
            self.supervisor.emergency_stop()

    def clear_fault(self, now: float) -> tuple[bool, str]:
        problem = self.backend.verify()
        if problem:
            return False, f"robot link not healthy: {problem}"
        with self.lock:
            return self.supervisor.clear_fault(self.backend.latest_sample(now), now)

    @property
    def state(self) -> State:
        return self.supervisor.state
