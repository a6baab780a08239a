"""Reward terms: each a small named function of one step's ``RewardInputs``; weights live in the config.

Every term is array code over a trailing per-robot axis: the same function scores one robot (inputs of shape
``[4]``, ``[12]``, ... give a scalar) or a batch (``[robots, 4]``, ``[robots, 12]``, ... give ``[robots]``), so the
per-robot environment and the batched one share one definition of each term.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class RewardInputs:
    command: np.ndarray  # vx, vy, yaw rate
    base_linear_velocity: np.ndarray  # body frame
    base_angular_velocity: np.ndarray  # body frame
    projected_gravity: np.ndarray
    joint_position_offset: np.ndarray  # measured minus default pose
    joint_position: np.ndarray
    soft_joint_lower: np.ndarray  # the soft limits joint_limits penalizes beyond
    soft_joint_upper: np.ndarray
    joint_torque: np.ndarray
    action: np.ndarray
    last_action: np.ndarray
    foot_contact: np.ndarray  # bool per foot
    first_contact: np.ndarray  # bool per foot: touched down this step
    air_time: np.ndarray  # s, per foot, the swing that just ended (valid where first_contact)
    foot_speed_xy: np.ndarray  # m/s per foot
    desired_stance: np.ndarray  # bool per foot, from the gait clock
    foot_height: np.ndarray  # m, foot sphere bottom above the ground
    swing_height_target: float
    terminated: np.ndarray | bool
    tracking_sigma: float
    air_time_target: float
    moving_command: np.ndarray | bool


def tracking_linear_velocity(r: RewardInputs) -> np.ndarray:
    error = np.sum(np.square(r.command[..., :2] - r.base_linear_velocity[..., :2]), axis=-1)
    return np.exp(-error / r.tracking_sigma)


def tracking_yaw_rate(r: RewardInputs) -> np.ndarray:
    error = np.square(r.command[..., 2] - r.base_angular_velocity[..., 2])
    return np.exp(-error / r.tracking_sigma)


def vertical_velocity(r: RewardInputs) -> np.ndarray:
    return np.square(r.base_linear_velocity[..., 2])


def roll_pitch_rate(r: RewardInputs) -> np.ndarray:
    return np.sum(np.square(r.base_angular_velocity[..., :2]), axis=-1)


def orientation(r: RewardInputs) -> np.ndarray:
    return np.sum(np.square(r.projected_gravity[..., :2]), axis=-1)


def torques(r: RewardInputs) -> np.ndarray:
    return np.sum(np.square(r.joint_torque), axis=-1)


def action_rate(r: RewardInputs) -> np.ndarray:
    return np.sum(np.square(r.action - r.last_action), axis=-1)


def feet_air_time(r: RewardInputs) -> np.ndarray:
    """legged_gym's: at each touchdown, the swing's duration beyond the target; only while asked to move."""
    return np.sum((r.air_time - r.air_time_target) * r.first_contact, axis=-1) * r.moving_command


def foot_slip(r: RewardInputs) -> np.ndarray:
    return np.sum(np.square(r.foot_speed_xy) * r.foot_contact, axis=-1)


def gait_contact(r: RewardInputs) -> np.ndarray:
    """Share of feet whose contact matches the gait clock's schedule (all feet down when standing)."""
    return np.mean(r.foot_contact == r.desired_stance, axis=-1)


def swing_height(r: RewardInputs) -> np.ndarray:
    """How close the feet the gait clock has in swing come to the target clearance (0 when standing)."""
    swing = ~np.asarray(r.desired_stance)
    return np.sum(np.minimum(r.foot_height, r.swing_height_target) * swing, axis=-1) / (r.swing_height_target * 4)


def pose(r: RewardInputs) -> np.ndarray:
    return np.sum(np.square(r.joint_position_offset), axis=-1)


def joint_limits(r: RewardInputs) -> np.ndarray:
    """legged_gym's dof_pos_limits: rad by which joints are beyond their soft limits, summed. A policy that holds a
    joint against its stop (stiff, but unable to move that way) pays for it."""
    below = np.maximum(r.soft_joint_lower - r.joint_position, 0.0)
    above = np.maximum(r.joint_position - r.soft_joint_upper, 0.0)
    return np.sum(below + above, axis=-1)


def termination(r: RewardInputs) -> np.ndarray:
    return np.asarray(r.terminated, dtype=np.float64)


REWARD_TERMS = {
    f.__name__: f
    for f in (
        tracking_linear_velocity, tracking_yaw_rate, vertical_velocity, roll_pitch_rate, orientation, torques,
        action_rate, feet_air_time, foot_slip, gait_contact, swing_height, pose, joint_limits, termination,
    )
}
UNSCALED_TERMS = {"termination"}  # applied once per episode, not per second


def total_reward(inputs: RewardInputs, weights: dict, dt: float, only_positive: bool) -> tuple[np.ndarray, dict]:
    """Weighted sum of the terms (times dt, except termination); returns it and each weighted term, scalars for one
    robot's inputs and ``[robots]`` arrays for a batch's."""
    terms = {}
    shaped = 0.0
    for name, weight in weights.items():
        if weight == 0.0:
            continue
        value = weight * REWARD_TERMS[name](inputs)
        if name not in UNSCALED_TERMS:
            value = value * dt
            shaped = shaped + value
        terms[name] = value
    if only_positive:
        shaped = np.maximum(shaped, 0.0)
    return shaped + sum(terms[n] for n in UNSCALED_TERMS if n in terms), terms
