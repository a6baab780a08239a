"""Many simulated Puppers of one profile in PyBullet behind the batch interface of ``MujocoBatch`` (every state and
randomization field an array over robots, ``[robots, ...]``), so that the batched training environment runs on
either engine.

Each robot is a ``PyBulletSimulation`` in a world of its own: the single simulation's physics by construction (rotors,
friction motors, PD at every physics step, the centre-of-mass moment). Several robots in one world would not step
faster: stepping the physics is 96 % of a robot's physics step here (2026-12-07, docs/performance.md), and Bullet's
solver cost grows with the robots either way; one world would also share one ground, whose friction is per robot.
It would take less memory (a world is 36 MB).
PyBullet steps in the calling thread holding the GIL; training spreads PyBullet batches over worker processes.
"""

from __future__ import annotations

import numpy as np

from pupper_ros.robot_profile import RobotProfile
from pupper_ros.sim.pybullet_sim import PyBulletSimulation
from pupper_ros.sim.robot_batch import RobotBatch


class PyBulletBatch(RobotBatch):
    engine = "pybullet"
    # Bytes of memory one robot takes: a PyBullet world of its own, 36 MB measured (resident memory of 65 worlds
    # against one, 2026-12-07), as each per-robot environment has today.
    BYTES_PER_ROBOT = 40_000_000

    def __init__(self, profile: RobotProfile, robots: int, *, physics_dt: float | None = None):
        from pupper_ros.sim import default_physics_dt

        super().__init__(profile, robots)
        self.physics_dt = physics_dt or default_physics_dt(profile, self.engine)
        self.simulations: list[PyBulletSimulation] = []
        try:
            for _ in range(robots):
                self.simulations.append(PyBulletSimulation(profile, physics_dt=self.physics_dt))
        except BaseException:
            self.close()
            raise
        self.foot_radius = self.simulations[0].foot_radius
        self.reset(np.arange(robots))

    def close(self) -> None:
        for sim in self.simulations:
            sim.close()
        self.simulations = []

    def _each(self, ids) -> list[tuple[int, int, PyBulletSimulation]]:
        ids = np.asarray(ids, dtype=np.intp)
        return [(k, int(i), self.simulations[i]) for k, i in enumerate(ids)]

    # --- state ---------------------------------------------------------------------------------------------------
    def reset(self, ids: np.ndarray, joint_position: np.ndarray | None = None, base_height: np.ndarray | float | None = None,
              base_xy: np.ndarray | None = None, base_yaw: np.ndarray | float = 0.0) -> None:
        """As ``MujocoBatch.reset``."""
        ids = np.asarray(ids, dtype=np.intp)
        q = np.broadcast_to(self.profile.default_pose if joint_position is None else joint_position,
                            (ids.size, self.profile.num_joints))
        height = np.broadcast_to(self.profile.standing_height if base_height is None else base_height, ids.shape)
        xy = np.zeros((ids.size, 2)) if base_xy is None else np.broadcast_to(base_xy, (ids.size, 2))
        yaw = np.broadcast_to(base_yaw, ids.shape)
        for k, i, sim in self._each(ids):
            sim.reset(q[k], float(height[k]), xy[k], float(yaw[k]))
        self.targets[ids] = q
        self.torque[ids] = 0.0

    def step(self, substeps: int = 1) -> None:
        """Advance every robot ``substeps`` physics steps, recomputing the PD torque before each."""
        for i, sim in enumerate(self.simulations):
            sim.kp, sim.kd, sim.motor_strength = self.kp[i], self.kd[i], self.motor_strength[i]
            sim.base_com_shift, sim.targets = self.base_com_shift[i], self.targets[i]
            sim.step(substeps)
            self.torque[i] = sim.torque

    def joint_states(self) -> tuple[np.ndarray, np.ndarray]:
        states = [sim.joint_states() for sim in self.simulations]
        return np.array([s[0] for s in states]), np.array([s[1] for s in states])

    def base_pose(self) -> tuple[np.ndarray, np.ndarray]:
        poses = [sim.base_pose() for sim in self.simulations]
        return np.array([p[0] for p in poses]), np.array([p[1] for p in poses])

    def base_velocity(self) -> tuple[np.ndarray, np.ndarray]:
        velocities = [sim.base_velocity() for sim in self.simulations]
        return np.array([v[0] for v in velocities]), np.array([v[1] for v in velocities])

    def set_base_velocity(self, ids: np.ndarray, linear_world: np.ndarray, angular_world: np.ndarray) -> None:
        ids = np.asarray(ids, dtype=np.intp)
        linear, angular = np.broadcast_to(linear_world, (ids.size, 3)), np.broadcast_to(angular_world, (ids.size, 3))
        for k, _, sim in self._each(ids):
            sim.set_base_velocity(linear[k], angular[k])

    def push(self, ids: np.ndarray, velocity_change_world: np.ndarray) -> None:
        change = np.broadcast_to(velocity_change_world, (len(ids), 3))
        for k, _, sim in self._each(ids):
            sim.push(change[k])

    def foot_positions(self) -> np.ndarray:
        return np.array([sim.foot_positions() for sim in self.simulations])

    def contacts(self) -> tuple[np.ndarray, np.ndarray]:
        """Whether each robot's feet [robots, 4] and base [robots] touch the ground: PyBullet's contact points, as the
        single simulation reports them."""
        each = [sim.contacts() for sim in self.simulations]
        return np.array([c[0] for c in each]), np.array([c[1] for c in each])

    def take_diverged(self) -> np.ndarray:
        """Which robots' state is non-finite; their owner resets them."""
        q, qd = self.joint_states()
        position, orientation = self.base_pose()
        linear, angular = self.base_velocity()
        return ~np.all(np.isfinite(np.concatenate([q, qd, position, orientation, linear, angular], axis=1)), axis=1)

    # --- randomization -------------------------------------------------------------------------------------------
    def set_ground_friction(self, ids: np.ndarray, friction: np.ndarray) -> None:
        friction = np.broadcast_to(friction, np.shape(ids))
        for k, _, sim in self._each(ids):
            sim.set_ground_friction(float(friction[k]))

    def ground_friction(self) -> np.ndarray:
        return np.array([sim.ground_friction() for sim in self.simulations])

    def set_mass_scales(self, ids: np.ndarray, base: np.ndarray, links: np.ndarray) -> None:
        base = np.broadcast_to(base, np.shape(ids))
        links = np.broadcast_to(links, (len(ids), self.profile.num_joints))
        for k, _, sim in self._each(ids):
            sim.set_mass_scales(float(base[k]), links[k])

    def link_masses(self) -> np.ndarray:
        return np.array([sim.link_masses() for sim in self.simulations])
