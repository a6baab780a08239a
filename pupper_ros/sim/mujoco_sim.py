"""The simulated Pupper in MuJoCo, the second engine: the same URDF and profile, loaded through ``MjSpec``.

As the Pupper v3 reference model: a free base on a ground plane, the profile's armature, damping and friction loss
as joint properties (MuJoCo's armature acts on the joint coordinate only), a 4 ms step. The shared PD is applied as
joint forces. Fixed links (feet, IMU) are fused into their parents by MuJoCo's compiler. The robot's geoms collide
with the ground only, as in PyBullet (no self-collision); the ground's friction is the contact's.

``implicit_pd=True`` (opt-in) is the same PD law as MuJoCo position actuators, one a joint (gain kp, bias -kp q
- kd qdot, both scaled by the motor strength, force clamped at the torque limit), under the ``implicitfast``
integrator, which takes the kd term implicitly. Explicit PD on Pupper v2's light legs needs a 0.5 ms step; the
implicit one holds the open-loop figures of that step at 4 ms (tests/test_sim_engines.py), but a policy trained at
0.5 ms walks alike only up to about 1 ms (docs/simulation.md): the step itself matters to contacts.
"""

from __future__ import annotations

import os

import numpy as np

from pupper_ros.robot_profile import RobotProfile
from pupper_ros.sim.simulation import GRAVITY, NOMINAL_GROUND_FRICTION, Simulation

if "DISPLAY" not in os.environ:
    os.environ.setdefault("MUJOCO_GL", "egl")  # headless offscreen rendering; read when mujoco is imported

import mujoco  # noqa: E402

GROUND = "ground"
BASE_GEOM = "base_collision"


class ModelError(ValueError):
    """A MuJoCo model that cannot be built from a profile; the message names the profile and the element."""


def build_model(profile: RobotProfile, physics_dt: float, implicit_pd: bool = False) -> mujoco.MjModel:
    def fail(element: str, why: str):
        raise ModelError(f"robot profile {profile.name} ({profile.urdf_path}): MuJoCo model, {element}: {why}")

    try:
        spec = mujoco.MjSpec.from_file(str(profile.urdf_path))
    except Exception as exc:  # mujoco raises ValueError for a URDF it cannot read
        fail("URDF", str(exc))
    spec.option.timestep = physics_dt
    spec.option.gravity = [0.0, 0.0, -GRAVITY]
    base = spec.body(profile.base_link)
    if base is None:
        fail(f"base link '{profile.base_link}'", "not in the URDF")
    base.add_freejoint(name="base_free")
    joints = {j.name: j for j in spec.joints}
    for name in profile.joints:
        joint = joints.get(name)
        if joint is None:
            fail(f"joint '{name}'", "not in the URDF")
        joint.armature = profile.actuator.armature
        joint.damping = [profile.actuator.damping, 0.0, 0.0]
        joint.frictionloss = profile.actuator.friction
    for foot in profile.feet:
        body = spec.body(foot)
        if body is None or not body.geoms:
            fail(f"foot '{foot}'", "no such link with a collision shape")
        body.geoms[0].name = foot
    for body in spec.bodies:
        for geom in body.geoms:  # the robot touches the ground only, never itself
            geom.contype, geom.conaffinity = 1, 0
    if base.geoms:
        base.geoms[0].name = BASE_GEOM
    ground = spec.worldbody.add_geom(name=GROUND, type=mujoco.mjtGeom.mjGEOM_PLANE, size=[0, 0, 1])
    ground.contype, ground.conaffinity = 0, 1
    ground.priority = 1  # its friction is the contact's
    ground.friction = [NOMINAL_GROUND_FRICTION, 0.005, 0.0001]
    ground.rgba = [0.55, 0.6, 0.7, 1.0]
    spec.worldbody.add_light(pos=[0.0, 0.0, 3.0], dir=[0.0, 0.0, -1.0], type=mujoco.mjtLightType.mjLIGHT_DIRECTIONAL)
    if implicit_pd:
        spec.option.integrator = mujoco.mjtIntegrator.mjINT_IMPLICITFAST
        for name in profile.joints:
            actuator = spec.add_actuator()
            actuator.name, actuator.target, actuator.trntype = f"pd_{name}", name, mujoco.mjtTrn.mjTRN_JOINT
            actuator.gaintype, actuator.biastype = mujoco.mjtGain.mjGAIN_FIXED, mujoco.mjtBias.mjBIAS_AFFINE
            actuator.gainprm[0] = profile.kp  # the gains are set again before every step, from the simulation's
            actuator.biasprm[0:3] = [0.0, -profile.kp, -profile.kd]
            actuator.forcelimited = True
            actuator.forcerange = [-profile.torque_limit, profile.torque_limit]
    try:
        return spec.compile()
    except Exception as exc:
        fail("compile", str(exc))


def set_implicit_pd(gainprm: np.ndarray, biasprm: np.ndarray, kp, kd, motor_strength) -> None:
    """Simulation.step's PD law, strength * (kp (target - q) - kd qd), as the position actuators' parameters (rows of
    ``actuator_gainprm`` / ``actuator_biasprm``, one a joint, possibly per robot): the target goes in ``ctrl``."""
    gainprm[..., 0] = kp * motor_strength
    biasprm[..., 1] = -kp * motor_strength
    biasprm[..., 2] = -kd * motor_strength


class MujocoSimulation(Simulation):
    engine = "mujoco"

    def __init__(self, profile: RobotProfile, *, physics_dt: float | None = None, gui: bool = False,
                 implicit_pd: bool = False):
        from pupper_ros.sim import default_physics_dt

        super().__init__(profile, physics_dt or default_physics_dt(profile, self.engine, implicit_pd))
        if gui:
            raise ValueError("the MuJoCo engine has no window here; use the pybullet engine for --gui")
        self.implicit_pd = implicit_pd
        self.model = model = build_model(profile, self.physics_dt, implicit_pd)
        if implicit_pd:
            self._actuators = np.array([model.actuator(f"pd_{j}").id for j in profile.joints])
        self.data = mujoco.MjData(model)
        self.base_body = model.body(profile.base_link).id
        free = model.joint("base_free")
        self._free_qpos, self._free_dof = free.qposadr[0], free.dofadr[0]
        self._qpos = np.array([model.joint(j).qposadr[0] for j in profile.joints])
        self._dof = np.array([model.joint(j).dofadr[0] for j in profile.joints])
        self.foot_geoms = np.array([model.geom(f).id for f in profile.feet])
        self.ground_geom = model.geom(GROUND).id
        self.base_geom = model.geom(BASE_GEOM).id if BASE_GEOM in [model.geom(i).name for i in range(model.ngeom)] else -1
        self._foot_radius = float(model.geom_size[self.foot_geoms[0], 0])
        self.leg_bodies = np.array([model.jnt_bodyid[model.joint(j).id] for j in profile.joints])
        self._nominal_mass = model.body_mass.copy()
        self._nominal_inertia = model.body_inertia.copy()
        self._renderer = None
        self.reset()

    @property
    def foot_radius(self) -> float:
        return self._foot_radius

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    # --- state -------------------------------------------------------------------------------------------------
    def reset(self, joint_position: np.ndarray | None = None, base_height: float | None = None,
              base_xy=(0.0, 0.0), base_yaw: float = 0.0) -> None:
        q = self.profile.default_pose if joint_position is None else np.asarray(joint_position, dtype=np.float64)
        height = self.profile.standing_height if base_height is None else base_height
        d = self.data
        mujoco.mj_resetData(self.model, d)
        d.qpos[self._qpos] = q
        self.set_base_pose([base_xy[0], base_xy[1], height], [0.0, 0.0, np.sin(base_yaw / 2), np.cos(base_yaw / 2)])
        self.targets = np.array(q, dtype=np.float64)
        self.torque[:] = 0.0

    def set_base_pose(self, position, orientation_xyzw) -> None:
        x, y, z, w = orientation_xyzw
        a = self._free_qpos
        self.data.qpos[a:a + 3] = position
        self.data.qpos[a + 3:a + 7] = [w, x, y, z]
        mujoco.mj_forward(self.model, self.data)

    def set_base_velocity(self, linear_world, angular_world) -> None:
        d, a = self.data, self._free_dof
        rot = d.xmat[self.base_body].reshape(3, 3)
        d.qvel[a:a + 3] = linear_world  # a free joint's linear velocity: the body origin's, world frame
        d.qvel[a + 3:a + 6] = rot.T @ np.asarray(angular_world, dtype=np.float64)  # its angular velocity: body frame
        mujoco.mj_forward(self.model, self.data)

    def joint_states(self) -> tuple[np.ndarray, np.ndarray]:
        return self.data.qpos[self._qpos].copy(), self.data.qvel[self._dof].copy()

    def base_pose(self) -> tuple[np.ndarray, np.ndarray]:
        a = self._free_qpos
        w, x, y, z = self.data.qpos[a + 3:a + 7]
        return self.data.qpos[a:a + 3].copy(), np.array([x, y, z, w]) / np.linalg.norm([x, y, z, w])

    def base_velocity(self) -> tuple[np.ndarray, np.ndarray]:
        d, a = self.data, self._free_dof
        w, x, y, z = d.qpos[self._free_qpos + 3:self._free_qpos + 7]
        quat = np.array([w, x, y, z])
        angular = np.zeros(3)
        mujoco.mju_rotVecQuat(angular, d.qvel[a + 3:a + 6], quat / np.linalg.norm(quat))
        return d.qvel[a:a + 3].copy(), angular

    def _step_physics(self, joint_torque: np.ndarray, base_torque_world: np.ndarray | None) -> None:
        d = self.data
        if self.implicit_pd:  # Simulation.step's PD law, handed to the actuators: the torque applied is theirs
            m, a = self.model, self._actuators
            gain, bias = m.actuator_gainprm[a], m.actuator_biasprm[a]  # copies (fancy indexing): written back below
            set_implicit_pd(gain, bias, self.kp, self.kd, self.motor_strength)
            m.actuator_gainprm[a], m.actuator_biasprm[a] = gain, bias
            d.ctrl[a] = self.targets
        else:
            d.qfrc_applied[self._dof] = joint_torque
        if base_torque_world is not None:
            d.xfrc_applied[self.base_body, 3:6] = base_torque_world
        else:
            d.xfrc_applied[self.base_body, 3:6] = 0.0
        mujoco.mj_step(self.model, d)
        if self.implicit_pd:
            joint_torque[:] = d.actuator_force[self._actuators]

    def foot_positions(self) -> np.ndarray:
        return self.data.geom_xpos[self.foot_geoms].copy()

    def contacts(self) -> tuple[np.ndarray, bool]:
        d = self.data
        touching = set()
        for k in range(d.ncon):
            c = d.contact[k]
            if c.geom1 == self.ground_geom:
                touching.add(c.geom2)
            elif c.geom2 == self.ground_geom:
                touching.add(c.geom1)
        return np.array([g in touching for g in self.foot_geoms]), self.base_geom in touching

    # --- randomization -----------------------------------------------------------------------------------------
    def set_ground_friction(self, friction: float) -> None:
        self.model.geom_friction[self.ground_geom, 0] = friction

    def set_mass_scales(self, base: float, links: np.ndarray) -> None:
        m = self.model
        for body, scale in zip([self.base_body, *self.leg_bodies], [base, *links]):
            m.body_mass[body] = self._nominal_mass[body] * scale
            m.body_inertia[body] = self._nominal_inertia[body] * scale
        mujoco.mj_setConst(m, self.data)

    def ground_friction(self) -> float:
        return float(self.model.geom_friction[self.ground_geom, 0])

    def link_masses(self) -> np.ndarray:
        return self.model.body_mass[[self.base_body, *self.leg_bodies]].copy()

    def set_gravity(self, gravity_world) -> None:
        self.model.opt.gravity[:] = gravity_world

    def base_mass(self) -> float:
        return float(self.model.body_mass[self.base_body])

    def total_mass(self) -> float:
        return float(self.model.body_mass.sum())

    def render(self, width: int = 320, height: int = 240, distance: float = 0.8) -> np.ndarray:
        """Offscreen OpenGL (EGL on a machine without a display)."""
        if self._renderer is None or (self._renderer.width, self._renderer.height) != (width, height):
            try:
                self._renderer = mujoco.Renderer(self.model, height=height, width=width)
            except Exception as exc:
                raise RuntimeError(f"MuJoCo cannot render here ({exc}); set MUJOCO_GL=egl or osmesa, or render with "
                                   "the pybullet engine") from exc
        camera = mujoco.MjvCamera()
        camera.lookat[:] = self.base_pose()[0]
        camera.distance, camera.azimuth, camera.elevation = distance, 120.0, -20.0
        self._renderer.update_scene(self.data, camera)
        return self._renderer.render()
