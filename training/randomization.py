"""Domain randomization: the draw of each robot's dynamics from the config's ranges, for the one-robot environment
and the batch alike (one source for both; each applies the draw to its own simulation), and the ranges a curriculum
has widened to after a number of the run's env steps."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from pupper_ros.robot_profile import RobotProfile
from pupper_ros.sim.simulation import NOMINAL_GROUND_FRICTION
from training.config import RandomizationConfig


@dataclass
class DynamicsDraw:
    """``k`` robots' dynamics: one row each."""

    friction: np.ndarray  # [k], the ground's
    base_mass_scale: np.ndarray  # [k]
    link_mass_scale: np.ndarray  # [k, joints]
    base_com_shift: np.ndarray  # [k, 3] m
    kp: np.ndarray  # [k, 1] Nm/rad
    kd: np.ndarray  # [k, 1] Nm s/rad
    motor_strength: np.ndarray  # [k, joints]
    latency_substeps: np.ndarray  # [k] physics steps the new targets wait


def draw_dynamics(r: RandomizationConfig, profile: RobotProfile, physics_dt: float, rng: np.random.Generator,
                  k: int) -> DynamicsDraw:
    j = profile.num_joints
    friction = rng.uniform(*r.friction, k)
    base_mass = rng.uniform(*r.base_mass_scale, k)
    link_mass = rng.uniform(*r.link_mass_scale, (k, j))
    com = np.stack([rng.uniform(*r.com_shift_x, k), rng.uniform(*r.com_shift_yz, k), rng.uniform(*r.com_shift_yz, k)],
                   axis=1)
    kp = profile.kp * rng.uniform(*r.kp_scale, (k, 1))
    kd = profile.kd * rng.uniform(*r.kd_scale, (k, 1))
    strength = rng.uniform(*r.motor_strength, (k, j))
    low, high = (int(round(x / physics_dt)) for x in r.latency_seconds)
    latency = rng.integers(low, high + 1, size=k)
    return DynamicsDraw(friction, base_mass, link_mass, com, kp, kd, strength, latency)


def nominal_dynamics(profile: RobotProfile, k: int) -> DynamicsDraw:
    """The robot as its profile describes it (randomization off)."""
    j = profile.num_joints
    return DynamicsDraw(np.full(k, NOMINAL_GROUND_FRICTION), np.ones(k), np.ones((k, j)), np.zeros((k, 3)),
                        np.full((k, 1), profile.kp), np.full((k, 1), profile.kd), np.ones((k, j)),
                        np.zeros(k, dtype=np.int64))


def ranges_at(r: RandomizationConfig, run_steps: int) -> RandomizationConfig:
    """The ranges robots are drawn from once the run has taken ``run_steps`` env steps (the config's curriculum:
    ``start`` until ``widen_from_steps``, then linearly to the config's own values by ``widen_until_steps``)."""
    if not r.start:
        return r
    if run_steps >= r.widen_until_steps:
        done = 1.0
    elif run_steps <= r.widen_from_steps:
        done = 0.0
    else:
        done = (run_steps - r.widen_from_steps) / (r.widen_until_steps - r.widen_from_steps)
    values = {}
    for key, begin in r.start.items():
        end = getattr(r, key)
        if isinstance(end, tuple):
            values[key] = tuple(b + done * (e - b) for b, e in zip(begin, end))
        else:
            values[key] = begin + done * (end - begin)
    return dataclasses.replace(r, **values, start={})
