"""Many simulated Puppers of one profile in MuJoCo, stepped together in C: ``mujoco.batch.Batch`` (a thread pool with
the GIL released) over the model ``mujoco_sim.build_model`` builds for one robot.

The same physics as ``MujocoSimulation``: the same model (URDF, armature, damping, friction loss, contacts), the same
motor-board PD computed at every physics step from the targets and saturated at the torque limit, applied as joint
forces, and the same centre-of-mass shift as a moment on the base. The PD is numpy over all robots between physics
steps, so a batch of one steps exactly as the single simulation does (tests/test_sim_batch.py holds them together).
With ``implicit_pd`` the PD is the single simulation's implicit actuators, their gains per robot.
Every state and randomization field is an array over robots: ``[robots, ...]``.
"""

from __future__ import annotations

import numpy as np

from pupper_ros.robot_profile import RobotProfile
from pupper_ros.rotations import rotate, world_z_of_body_axes
from pupper_ros.sim.mujoco_sim import BASE_GEOM, GROUND, build_model, set_implicit_pd
from pupper_ros.sim.robot_batch import RobotBatch
from pupper_ros.sim.simulation import GRAVITY

import mujoco  # noqa: E402  (after mujoco_sim, which sets the headless GL backend)
import mujoco.batch  # noqa: E402


class MujocoBatch(RobotBatch):
    engine = "mujoco"
    # Bytes of memory one robot takes: 227 KB measured for the batch's MjData and the training environment's arrays
    # (resident memory of 2,048 robots against 64, 2026-12-06), plus PPO's rollout storage of 24 steps.
    BYTES_PER_ROBOT = 250_000

    def __init__(self, profile: RobotProfile, robots: int, *, physics_dt: float | None = None, threads: int = 0,
                 implicit_pd: bool = False):
        from pupper_ros.sim import default_physics_dt

        super().__init__(profile, robots)
        self.physics_dt = physics_dt or default_physics_dt(profile, self.engine, implicit_pd)
        self.implicit_pd = implicit_pd
        self.model = model = build_model(profile, self.physics_dt, implicit_pd)
        self.batch = mujoco.batch.Batch(model, robots, nthread=threads, persistent=True)
        if implicit_pd:
            self._actuators = np.array([model.actuator(f"pd_{j}").id for j in profile.joints])
            self._gain, self._bias = self.batch.expand("actuator_gainprm"), self.batch.expand("actuator_biasprm")
            self._ctrl, self._actuator_force = self.batch.bind("ctrl"), self.batch.bind("actuator_force")
        self.base_body = model.body(profile.base_link).id
        free = model.joint("base_free")
        self._free_qpos, self._free_dof = int(free.qposadr[0]), int(free.dofadr[0])
        self._qpos = np.array([model.joint(j).qposadr[0] for j in profile.joints])
        self._dof = np.array([model.joint(j).dofadr[0] for j in profile.joints])
        self.leg_bodies = np.array([model.jnt_bodyid[model.joint(j).id] for j in profile.joints])
        self.foot_geoms = np.array([model.geom(f).id for f in profile.feet])
        self.ground_geom = model.geom(GROUND).id
        self.base_geom = model.geom(BASE_GEOM).id
        self.foot_radius = float(model.geom_size[self.foot_geoms[0], 0])
        self._base_geom_half = model.geom_size[self.base_geom].copy()
        self._nominal_mass = model.body_mass.copy()
        self._nominal_inertia = model.body_inertia.copy()
        self.qpos = self.batch.bind("qpos")
        self.qvel = self.batch.bind("qvel")
        self._qfrc = self.batch.bind("qfrc_applied")
        self._xfrc = self.batch.bind("xfrc_applied")
        self._geom_xpos = self.batch.bind("geom_xpos")
        self._time = self.batch.bind("time")
        # Robots whose physics diverged since the last ``take_diverged``: MuJoCo resets a simulation whose state goes
        # non-finite inside the step (its clock starts again at 0), so divergence shows as a clock that went back.
        self._diverged = np.zeros(robots, dtype=bool)
        self._friction = None  # the per-robot geom_friction, expanded on first use
        self.reset(np.arange(robots))

    def close(self) -> None:
        """Nothing to release: the batch's memory goes with the object (PyBulletBatch disconnects its worlds)."""

    # --- state ---------------------------------------------------------------------------------------------------
    def reset(self, ids: np.ndarray, joint_position: np.ndarray | None = None, base_height: np.ndarray | float | None = None,
              base_xy: np.ndarray | None = None, base_yaw: np.ndarray | float = 0.0) -> None:
        """Robots ``ids`` at rest: joints at ``joint_position`` ([len(ids), 12] or [12]; the default pose), base_link at
        ``base_height`` (standing height), ``base_xy`` ([len(ids), 2]; the origin) and ``base_yaw``."""
        ids = np.asarray(ids, dtype=np.intp)
        if ids.size == 0:
            return
        q = self.profile.default_pose if joint_position is None else np.asarray(joint_position, dtype=np.float64)
        height = self.profile.standing_height if base_height is None else base_height
        self.batch.reset(ids, stage=mujoco.mjtStage.mjSTAGE_NONE)
        a = self._free_qpos
        self.qpos[np.ix_(ids, self._qpos)] = q
        self.qpos[ids, a + 2] = height
        self.qpos[ids, a:a + 2] = 0.0 if base_xy is None else base_xy
        half = np.asarray(base_yaw, dtype=np.float64) / 2
        self.qpos[ids, a + 3] = np.cos(half)
        self.qpos[ids, a + 6] = np.sin(half)
        self.batch.forward(ids)
        self.targets[ids] = q
        self.torque[ids] = 0.0

    def step(self, substeps: int = 1) -> None:
        """Advance every robot ``substeps`` physics steps, recomputing the PD torque before each."""
        limit = self.profile.torque_limit
        com_torque = self._com_shift_torque() if np.any(self.base_com_shift) else None
        self._xfrc[:, self.base_body, 3:6] = 0.0 if com_torque is None else com_torque
        if self.implicit_pd:  # the single simulation's PD law, handed to the actuators (mujoco_sim.MujocoSimulation)
            a = self._actuators
            gain, bias = self._gain[:, a], self._bias[:, a]  # copies (fancy indexing): written back below
            set_implicit_pd(gain, bias, self.kp, self.kd, self.motor_strength)
            self._gain[:, a], self._bias[:, a] = gain, bias
            self._ctrl[:, a] = self.targets
        for _ in range(substeps):
            if not self.implicit_pd:
                q, qd = self.qpos[:, self._qpos], self.qvel[:, self._dof]
                torque = self.kp * (self.targets - q) - self.kd * qd
                np.clip(torque * self.motor_strength, -limit, limit, out=self.torque)
                self._qfrc[:, self._dof] = self.torque
            before = self._time.copy()
            self.batch.step()
            if self.implicit_pd:
                self.torque[:] = self._actuator_force[:, self._actuators]
            self._diverged |= ~(self._time > before) | ~np.isfinite(self.torque).all(axis=1)

    def _com_shift_torque(self) -> np.ndarray:
        _, orientation = self.base_pose()
        shift = rotate(orientation, self.base_com_shift)
        weight = self.model.body_mass[self.base_body] * GRAVITY if self.batch.expanded("body_mass") is None \
            else self.batch.expanded("body_mass")[:, self.base_body] * GRAVITY
        return np.stack([-shift[:, 1] * weight, shift[:, 0] * weight, np.zeros(self.robots)], axis=1)

    def joint_states(self) -> tuple[np.ndarray, np.ndarray]:
        """Joint positions and velocities [robots, 12] in profile order."""
        return self.qpos[:, self._qpos], self.qvel[:, self._dof]

    def base_pose(self) -> tuple[np.ndarray, np.ndarray]:
        """base_link origins [robots, 3] (world) and orientations [robots, 4] (xyzw, unit)."""
        a = self._free_qpos
        wxyz = self.qpos[:, a + 3:a + 7]
        xyzw = np.concatenate([wxyz[:, 1:], wxyz[:, :1]], axis=1)
        return self.qpos[:, a:a + 3].copy(), xyzw / np.linalg.norm(xyzw, axis=1, keepdims=True)

    def base_velocity(self) -> tuple[np.ndarray, np.ndarray]:
        """Linear velocity of base_link's origin and angular velocity [robots, 3], both in the world frame."""
        a = self._free_dof
        _, orientation = self.base_pose()
        return self.qvel[:, a:a + 3].copy(), rotate(orientation, self.qvel[:, a + 3:a + 6])

    def set_base_velocity(self, ids: np.ndarray, linear_world: np.ndarray, angular_world: np.ndarray) -> None:
        ids = np.asarray(ids, dtype=np.intp)
        a = self._free_dof
        _, orientation = self.base_pose()
        self.qvel[ids, a:a + 3] = linear_world
        conjugate = orientation[ids] * np.array([-1.0, -1.0, -1.0, 1.0])
        self.qvel[ids, a + 3:a + 6] = rotate(conjugate, np.broadcast_to(angular_world, (ids.size, 3)))
        self.batch.forward(ids)

    def push(self, ids: np.ndarray, velocity_change_world: np.ndarray) -> None:
        linear, angular = self.base_velocity()
        ids = np.asarray(ids, dtype=np.intp)
        self.set_base_velocity(ids, linear[ids] + velocity_change_world, angular[ids])

    def foot_positions(self) -> np.ndarray:
        """World positions of the foot centres [robots, 4, 3], in the profile's foot order."""
        return self._geom_xpos[:, self.foot_geoms]

    def contacts(self) -> tuple[np.ndarray, np.ndarray]:
        """Whether each robot's feet [robots, 4] and base [robots] touch the ground, read from geometry: a foot when
        its sphere reaches below the ground plane, the base when its box does (its centre's height less its
        half-extent along world z). That is MuJoCo's own criterion for these shapes: the geoms have no contact margin."""
        feet = self.foot_positions()[..., 2] - self.foot_radius < 0.0
        _, orientation = self.base_pose()
        reach = np.abs(world_z_of_body_axes(orientation)) @ self._base_geom_half
        return feet, self._geom_xpos[:, self.base_geom, 2] - reach < 0.0

    def take_diverged(self) -> np.ndarray:
        """Which robots' physics diverged (went non-finite) since the last call; their owner resets them."""
        diverged = self._diverged | ~(np.isfinite(self.qpos).all(axis=1) & np.isfinite(self.qvel).all(axis=1))
        self._diverged = np.zeros(self.robots, dtype=bool)
        return diverged

    # --- randomization -------------------------------------------------------------------------------------------
    def set_ground_friction(self, ids: np.ndarray, friction: np.ndarray) -> None:
        if self._friction is None:
            self._friction = self.batch.expand("geom_friction")
        self._friction[np.asarray(ids, dtype=np.intp), self.ground_geom, 0] = friction

    def ground_friction(self) -> np.ndarray:
        if self._friction is None:
            return np.full(self.robots, self.model.geom_friction[self.ground_geom, 0])
        return self._friction[:, self.ground_geom, 0].copy()

    def set_mass_scales(self, ids: np.ndarray, base: np.ndarray, links: np.ndarray) -> None:
        """Scale robots ``ids``' base ([len(ids)]) and leg links' ([len(ids), 12], profile joint order) mass and inertia
        from their URDF values."""
        ids = np.asarray(ids, dtype=np.intp)
        mass, inertia = self.batch.expand("body_mass"), self.batch.expand("body_inertia")
        bodies = np.concatenate([[self.base_body], self.leg_bodies])
        scales = np.concatenate([np.reshape(base, (-1, 1)), np.asarray(links)], axis=1)
        mass[np.ix_(ids, bodies)] = self._nominal_mass[bodies] * scales
        inertia[np.ix_(ids, bodies)] = self._nominal_inertia[bodies] * scales[..., None]
        self.batch.set_const()

    def link_masses(self) -> np.ndarray:
        """[robots, 13]: the base's mass, then each leg link's in the profile's joint order."""
        bodies = np.concatenate([[self.base_body], self.leg_bodies])
        expanded = self.batch.expanded("body_mass")
        return np.tile(self.model.body_mass[bodies], (self.robots, 1)) if expanded is None else expanded[:, bodies].copy()
