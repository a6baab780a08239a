"""Left/right mirror of observations and actions, for rsl_rl's symmetry augmentation (Mittal et al., ICRA 2024).

Mirroring swaps each right leg with its left twin. A joint value keeps or flips its sign depending on how the twin's
axis sits in the URDF: a reflection through the body's xz-plane turns a rotation by q about axis a into a rotation by
-q about the reflected axis, so a twin whose axis is the reflected one takes -q (every Pupper v3 joint), and a twin
whose axis is the reflected one reversed takes +q (Pupper v2's hips and knees, whose axes all point the same way).
``mirror_joint_signs`` reads this from the URDF and checks the default pose against it.
"""

from __future__ import annotations

import numpy as np
import torch

from pupper_ros.contract import PolicyContract
from pupper_ros.robot_profile import RobotProfile

REFLECTION = np.diag([1.0, -1.0, 1.0])  # the body's left-right mirror (REP 103: y points left)
_TWIN_SWAPS = (("_r_", "_l_"), ("right", "left"), ("Right", "Left"))


def _twin(name: str) -> str:
    for right, left in _TWIN_SWAPS:
        if right in name or left in name:
            return name.replace(right, "\0").replace(left, right).replace("\0", left)
    raise ValueError(f"joint or link '{name}' names no side ({', '.join(r + '/' + l for r, l in _TWIN_SWAPS)})")


def mirror_joint_signs(profile: RobotProfile) -> tuple[np.ndarray, np.ndarray]:
    """(permutation, sign): joint j of the mirrored robot is ``sign[j] * q[perm[j]]`` of the original."""
    from pupper_ros.sim.urdf import link_poses, parse

    root = parse(profile.urdf_path)
    poses = link_poses(root, {})
    axes = {}
    for joint in root.findall("joint"):
        if joint.get("name") in profile.joints:
            axis = np.array([float(v) for v in joint.find("axis").get("xyz").split()])
            axes[joint.get("name")] = poses[joint.find("child").get("link")][0] @ axis  # in the base frame
    joints = list(profile.joints)
    perm = np.array([joints.index(_twin(j)) for j in joints])
    sign = np.zeros(len(joints))
    for j, name in enumerate(joints):
        reflected, twin = REFLECTION @ axes[name], axes[joints[perm[j]]]
        if np.allclose(twin, reflected, atol=1e-3):  # URDF angles are rounded (1.5708 for pi/2)
            sign[j] = -1.0
        elif np.allclose(twin, -reflected, atol=1e-3):
            sign[j] = 1.0
        else:
            raise ValueError(f"{profile.name}: joint {name}'s axis {axes[name]} has no mirror twin (its twin "
                             f"{joints[perm[j]]} turns about {twin})")
    if not np.allclose(sign * profile.default_pose[perm], profile.default_pose):
        raise ValueError(f"{profile.name}: default pose is not mirror-symmetric with joint signs {sign}")
    return perm, sign


def mirror_maps(contract: PolicyContract, profile: RobotProfile, critic_extra_feet_at: int | None = None):
    """(permutation, sign) for the actor observation, the action, and the critic observation."""
    joint_perm, joint_sign = mirror_joint_signs(profile)
    feet = list(profile.feet)
    foot_perm = np.array([feet.index(_twin(f)) for f in feet])

    term_maps = {
        "base_angular_velocity": (np.arange(3), np.array([-1.0, 1.0, -1.0])),
        "projected_gravity": (np.arange(3), np.array([1.0, -1.0, 1.0])),
        "velocity_command": (np.arange(3), np.array([1.0, -1.0, -1.0])),
        "gait_clock": (np.arange(2), np.array([-1.0, -1.0])),  # the trot's diagonal pairs swap: half a period
        "joint_position_offset": (joint_perm, joint_sign),
        "joint_velocity": (joint_perm, joint_sign),
        "last_action": (joint_perm, joint_sign),
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
    return (obs_perm, obs_sign), (joint_perm, joint_sign), (critic_perm, critic_sign)


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
