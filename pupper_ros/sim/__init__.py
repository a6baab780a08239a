"""Simulated Puppers behind one interface (``Simulation``), in PyBullet or MuJoCo, and the firmware emulator.

Imported only by code that simulates: the robot runtime never loads this package unless it is asked to simulate.
Engines are chosen by name wherever a simulation is made (training env, ``pupper-eval --engine``, ``pupper-walk
--engine``); each is an optional extra, checked before anything starts.
"""

from __future__ import annotations

import importlib
import importlib.util

from pupper_ros.robot_profile import RobotProfile

# engine name -> (module, class, the Python module it needs, the extra that installs it)
ENGINES = {
    "pybullet": ("pupper_ros.sim.pybullet_sim", "PyBulletSimulation", "pybullet", "sim"),
    "mujoco": ("pupper_ros.sim.mujoco_sim", "MujocoSimulation", "mujoco", "mujoco"),
}
# engine name -> (module, class) of its batch: many robots of one profile as arrays (training/batch_env.py)
BATCHES = {
    "pybullet": ("pupper_ros.sim.pybullet_batch", "PyBulletBatch"),
    "mujoco": ("pupper_ros.sim.mujoco_batch", "MujocoBatch"),
}
DEFAULT_ENGINE = "pybullet"
MUJOCO_PHYSICS_DT = 0.004  # the Pupper v3 reference model's step


def physics_substeps(control_period: float, physics_dt: float) -> int:
    """The one rule, for the runtime's simulators and for training, of how a control period is cut into physics
    steps: a whole number of ``physics_dt`` steps. A period no longer than one step is one step of the period (the
    step shrinks, which only makes the physics finer). A longer period that ``physics_dt`` does not divide is refused
    (ValueError): rounding either one would simulate another control rate, or another step, than was asked for."""
    if not (control_period > 0 and physics_dt > 0):
        raise ValueError(f"control period and physics step must be positive, got {control_period} and {physics_dt}")
    steps = control_period / physics_dt
    if steps <= 1.0 + 1e-9:
        return 1
    if abs(steps - round(steps)) > 1e-6 * steps:
        raise ValueError(f"a {control_period * 1e3:g} ms control period is not a whole number of {physics_dt * 1e3:g} ms "
                         "physics steps")
    return round(steps)


def control_substeps(profile: RobotProfile, engine: str, control_period: float, physics_dt: float | None = None) -> int:
    """``physics_substeps`` at ``physics_dt`` or, by default, the engine's step for this robot (``default_physics_dt``);
    the simulation then steps ``control_period / substeps``."""
    return physics_substeps(control_period, physics_dt or default_physics_dt(profile, engine))


def default_physics_dt(profile: RobotProfile, engine: str, implicit_pd: bool = False) -> float:
    """The physics step an engine runs this robot at unless told otherwise: the profile's (the step at which
    explicit PD on this model is stable), and for MuJoCo at most the reference model's 4 ms, which MuJoCo's implicit
    PD runs every robot at."""
    if engine != "mujoco":
        return profile.physics_dt
    return MUJOCO_PHYSICS_DT if implicit_pd else min(profile.physics_dt, MUJOCO_PHYSICS_DT)


class EngineError(ValueError):
    """An unknown engine, or one that is not installed here."""


def check_engine(name: str) -> None:
    """Raise EngineError naming what to do if ``name`` is not an engine that can run here."""
    if name not in ENGINES:
        raise EngineError(f"unknown engine '{name}'; choose one of {', '.join(ENGINES)}")
    _, _, needs, extra = ENGINES[name]
    if importlib.util.find_spec(needs) is None:
        raise EngineError(f"engine '{name}' needs the Python package '{needs}', which is not installed: "
                          f"pip install 'pupper_ros[{extra}]'")


def make_simulation(profile: RobotProfile, engine: str = DEFAULT_ENGINE, **options):
    """A ``Simulation`` of ``profile`` in ``engine`` (options: physics_dt, gui; MuJoCo also implicit_pd)."""
    check_engine(engine)
    module, cls, _, _ = ENGINES[engine]
    return getattr(importlib.import_module(module), cls)(profile, **options)


def batch_class(engine: str):
    """The class of ``engine``'s batch of robots (a ``RobotBatch``)."""
    check_engine(engine)
    module, cls = BATCHES[engine]
    return getattr(importlib.import_module(module), cls)


def make_batch(profile: RobotProfile, engine: str, robots: int, *, physics_dt: float | None = None, threads: int = 0,
               implicit_pd: bool = False):
    """``robots`` simulated Puppers of ``profile`` in ``engine`` as arrays. ``threads`` (0: every core) and
    ``implicit_pd`` are MuJoCo's; PyBullet steps its robots one after the other in the calling thread."""
    batch = batch_class(engine)
    if engine == "mujoco":
        return batch(profile, robots, physics_dt=physics_dt, threads=threads, implicit_pd=implicit_pd)
    if implicit_pd:
        raise EngineError(f"the implicit PD is MuJoCo's; this batch runs in {engine}")
    return batch(profile, robots, physics_dt=physics_dt)
