"""Left/right mirror of observations and actions, for rsl_rl's symmetry augmentation (Mittal et al., ICRA 2024).

Mirroring swaps each right leg with its left twin and negates every joint value: Pupper's left joints turn the
opposite way to their right twins (its default pose is antisymmetric, which ``mirror_maps`` checks).
"""

from __future__ import annotations

import numpy as np
import torch

from pupper_ros.contract import PolicyContract
from pupper_ros.robot_profile import RobotProfile

JOINT_SIGN = -1.0


def _twin(name: str) -> str:
    return name.replace("_r_", "_L_").replace("_l_", "_r_").replace("_L_", "_l_")


def mirror_maps(contract: PolicyContract, profile: RobotProfile, critic_extra_feet_at: int | None = None):
    """(permutation, sign) for the actor observation, the action, and the critic observation."""
    joints = list(profile.joints)
    joint_perm = np.array([joints.index(_twin(j)) for j in joints])
    if not np.allclose(JOINT_SIGN * profile.default_pose[joint_perm], profile.default_pose):
        raise ValueError(f"{profile.name}: default pose is not mirror-symmetric with joint sign {JOINT_SIGN}")
    feet = list(profile.feet)
    foot_perm = np.array([feet.index(_twin(f)) for f in feet])

    term_maps = {
        "base_angular_velocity": (np.arange(3), np.array([-1.0, 1.0, -1.0])),
        "projected_gravity": (np.arange(3), np.array([1.0, -1.0, 1.0])),
        "velocity_command": (np.arange(3), np.array([1.0, -1.0, -1.0])),
        "gait_clock": (np.arange(2), np.array([-1.0, -1.0])),  # the trot's diagonal pairs swap: half a period
        "joint_position_offset": (joint_perm, np.full(len(joints), JOINT_SIGN)),
        "joint_velocity": (joint_perm, np.full(len(joints), JOINT_SIGN)),
        "last_action": (joint_perm, np.full(len(joints), JOINT_SIGN)),
    }
    perm, sign, start = [], [], 0
    for term in contract.terms:
        p, s = term_maps[term.name]
        perm.append(p + start)
        sign.append(s)
        start += term.size
    obs_perm, obs_sign = np.concatenate(perm), np.concatenate(sign)
    # Critic extras: base linear velocity (3), foot contacts (4), then unsigned scalars.
    n = contract.observation_size
    critic_perm = np.concatenate([obs_perm, n + np.arange(3), n + 3 + foot_perm, n + 7 + np.arange(3)])
    critic_sign = np.concatenate([obs_sign, [1.0, -1.0, 1.0], np.ones(4), np.ones(3)])
    return (obs_perm, obs_sign), (joint_perm, np.full(len(joints), JOINT_SIGN)), (critic_perm, critic_sign)


def _apply(x: torch.Tensor, perm: np.ndarray, sign: np.ndarray) -> torch.Tensor:
    return x[..., torch.as_tensor(perm)] * torch.as_tensor(sign, dtype=x.dtype)


def mirror_augmentation(env, obs=None, actions=None):
    """rsl_rl ``data_augmentation_func``: returns [original; mirrored] observations and actions."""
    maps = env.mirror_maps
    obs_out = actions_out = None
    if obs is not None:
        mirrored = obs.clone()
        mirrored["policy"] = _apply(obs["policy"], *maps[0])
        mirrored["critic"] = _apply(obs["critic"], *maps[2])
        obs_out = torch.cat([obs, mirrored], dim=0)
    if actions is not None:
        actions_out = torch.cat([actions, _apply(actions, *maps[1])], dim=0)
    return obs_out, actions_out
