"""The simulated Pupper as a backend: a simulation (PyBullet or MuJoCo, pupper_ros.sim), advanced by one control
period per write.

In real-time mode the control loop paces the writes on the wall clock; in lock-step mode the loop runs on simulated
time as fast as it can (tests), so runs are deterministic and faster than real time.
"""

from __future__ import annotations

import numpy as np

from pupper_ros.backends.backend import Backend, BackendError, BackendParameterError
from pupper_ros.robot_profile import RobotProfile
from pupper_ros.backends.io import JointCommand, SensorSample
from pupper_ros.sim import DEFAULT_ENGINE, EngineError, control_substeps, make_simulation
from pupper_ros.rotations import rotation_matrix
from pupper_ros.sim.simulation import GRAVITY, Simulation


class SimBackend(Backend):
    def __init__(self, profile: RobotProfile, control_period: float, *, engine: str = DEFAULT_ENGINE, gui: bool = False,
                 realtime: bool = True, physics_dt: float | None = None):
        self.profile = profile
        self.control_period = control_period
        self.engine = engine
        self.gui = gui
        self.lockstep = not realtime
        self._physics_dt = physics_dt
        self.sim: Simulation | None = None
        self._substeps = 1
        self._sample: SensorSample | None = None  # refreshed by write, as the simulation steps
        self._out: SensorSample | None = None  # what latest_sample hands out: unchanged until the next call
        self._last_velocity_world = np.zeros(3)

    @classmethod
    def from_parameters(cls, profile, control_period, values, context=None) -> "SimBackend":
        return cls(profile, control_period, engine=values["sim_engine"], gui=values["sim_gui"],
                   realtime=values["sim_realtime"])

    def open(self) -> None:
        """Raises ``BackendParameterError`` naming ``sim_engine`` for an engine that cannot run here, or ``control_rate``
        for a control period the physics step does not divide."""
        try:
            self._substeps = control_substeps(self.profile, self.engine, self.control_period, self._physics_dt)
        except ValueError as exc:
            raise BackendParameterError("control_rate", str(exc)) from exc
        try:
            self.sim = make_simulation(self.profile, self.engine, physics_dt=self.control_period / self._substeps,
                                       gui=self.gui)
        except EngineError as exc:
            raise BackendParameterError("sim_engine", str(exc)) from exc
        # The robot starts lying on its belly with limp legs, as a real robot does before activation.
        self.sim.reset(joint_position=self.profile.default_pose, base_height=self.profile.standing_height)
        self.sim.set_targets(self.profile.default_pose, kp=0.0, kd=0.1)
        self.sim.step(int(round(1.0 / self.sim.physics_dt)))
        n = self.profile.num_joints
        self._sample, self._out = SensorSample.zeros(n), SensorSample.zeros(n)
        self._refresh(0.0)

    def _refresh(self, now: float) -> None:
        state = self.sim.state()
        s = self._sample
        s.stamp = now
        s.joint_position[:] = state.joint_position
        s.joint_velocity[:] = state.joint_velocity
        s.orientation[:] = state.base_orientation
        s.angular_velocity[:] = state.base_angular_velocity
        _, _, velocity_world, _ = self.sim.ground_truth()
        rot = rotation_matrix(state.base_orientation)
        acceleration_world = (velocity_world - self._last_velocity_world) / self.control_period
        self._last_velocity_world = velocity_world
        s.linear_acceleration[:] = rot.T @ (acceleration_world + np.array([0.0, 0.0, GRAVITY]))

    def latest_sample(self, now: float) -> SensorSample | None:
        # The simulator's state is current by construction: its sensors are never stale.
        self._out.copy_from(self._sample)
        self._out.stamp = now
        return self._out

    def write(self, command: JointCommand, now: float) -> None:
        if self.sim is None:
            raise BackendError("simulation is not open")
        self.sim.set_targets(command.position, kp=command.kp, kd=command.kd)
        try:
            self.sim.step(self._substeps)
        except Exception as exc:  # pybullet.error when the physics server is gone (e.g. the GUI closed)
            raise BackendError(f"simulation failed: {exc}") from exc
        self._refresh(now + self.control_period)

    def close(self) -> None:
        if self.sim is not None:
            self.sim.close()
            self.sim = None

    def ground_truth(self):
        return self.sim.ground_truth() if self.sim is not None else None
