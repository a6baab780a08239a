"""The policy contract: what a policy sees and what its output means, shared by training and runtime.

Pure numpy. Training builds its observations with ``ObservationBuilder`` and maps actions with ``ActionMapping``;
the runtime calls the same two classes, and an exported policy carries ``PolicyContract.to_dict()`` in its metadata
so that a model built for another layout is refused at load time. Change the layout, change the version.

Only quantities the real robot measures appear: IMU angular velocity and orientation, joint encoders, the command,
the gait clock the runtime keeps itself, and the policy's own last action. No base linear velocity.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from pupper_ros.robot_profile import RobotProfile


@dataclass(frozen=True)
class ObservationTerm:
    name: str
    size: int
    scale: tuple[float, ...]  # one factor per element, applied before the clip


@dataclass(frozen=True)
class PolicyContract:
    version: int
    terms: tuple[ObservationTerm, ...]
    history_length: int  # frames stacked, newest first
    observation_clip: float
    action_size: int
    action_scale: float  # joint target = default pose + action_scale * action
    action_clip: float  # policy outputs are clipped to +/- this before use and before feedback
    control_rate_hz: float
    gait_frequency_hz: float  # the gait clock's rate; its phase is an observation term

    @property
    def frame_size(self) -> int:
        return sum(t.size for t in self.terms)

    @property
    def observation_size(self) -> int:
        return self.frame_size * self.history_length

    @property
    def control_period(self) -> float:
        return 1.0 / self.control_rate_hz

    def to_dict(self) -> dict:
        return {
            "version": self.version,
            "observation": {
                "terms": [{"name": t.name, "size": t.size, "scale": list(t.scale)} for t in self.terms],
                "history_length": self.history_length,
                "clip": self.observation_clip,
                "size": self.observation_size,
            },
            "action": {"size": self.action_size, "scale": self.action_scale, "clip": self.action_clip},
            "control_rate_hz": self.control_rate_hz,
            "gait_frequency_hz": self.gait_frequency_hz,
        }


CONTRACT_V1 = PolicyContract(
    version=1,
    terms=(
        ObservationTerm("base_angular_velocity", 3, (0.25, 0.25, 0.25)),  # rad/s, body frame (gyro)
        ObservationTerm("projected_gravity", 3, (1.0, 1.0, 1.0)),  # unit gravity direction in the body frame
        ObservationTerm("velocity_command", 3, (2.0, 2.0, 0.25)),  # vx m/s, vy m/s, yaw rate rad/s
        ObservationTerm("gait_clock", 2, (1.0, 1.0)),  # sin, cos of 2 pi phase
        ObservationTerm("joint_position_offset", 12, (1.0,) * 12),  # rad, measured minus default pose
        ObservationTerm("joint_velocity", 12, (0.05,) * 12),  # rad/s
        ObservationTerm("last_action", 12, (1.0,) * 12),  # the clipped policy output of the previous step
    ),
    history_length=1,
    observation_clip=100.0,
    action_size=12,
    action_scale=0.5,
    action_clip=4.0,
    control_rate_hz=50.0,
    gait_frequency_hz=2.5,
)

CONTRACTS: dict[int, PolicyContract] = {CONTRACT_V1.version: CONTRACT_V1}
CURRENT_CONTRACT = CONTRACT_V1


def all_finite(values: np.ndarray) -> bool:
    """Whether every element of a 1-D array is finite: NaN and infinities survive a sum (a sum that overflows
    counts as not finite, which fails closed). Python's sum over ``tolist()`` takes a quarter of the time of a
    numpy reduction on the control loop's 3- to 12-element vectors."""
    return math.isfinite(sum(values.tolist()))


def clip_into(values: np.ndarray, low, high, out: np.ndarray) -> np.ndarray:
    """np.clip without its Python-level wrapper (a few microseconds a call in the control loop)."""
    np.maximum(values, low, out=out)
    return np.minimum(out, high, out=out)


def projected_gravity(quaternion_xyzw: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Unit gravity direction (world -z) expressed in the body frame, from the body orientation in the world."""
    x, y, z, w = quaternion_xyzw.tolist()  # Python floats: scalar arithmetic on numpy scalars is several times slower
    out = np.empty(3) if out is None else out
    # Third row of the rotation matrix (body to world), negated: R^T @ (0, 0, -1).
    out[0] = -2.0 * (x * z - w * y)
    out[1] = -2.0 * (y * z + w * x)
    out[2] = -(1.0 - 2.0 * (x * x + y * y))
    return out


def projected_gravity_batch(quaternions_xyzw: np.ndarray) -> np.ndarray:
    """``projected_gravity`` of each row of ``[robots, 4]`` orientations: ``[robots, 3]`` (the same formula)."""
    x, y, z, w = quaternions_xyzw.T
    return np.stack([-2.0 * (x * z - w * y), -2.0 * (y * z + w * x), -(1.0 - 2.0 * (x * x + y * y))], axis=1)


def tilt_from_gravity(gravity_body: np.ndarray) -> float:
    """Angle between the body's up axis and world up, in rad, from the projected gravity vector."""
    return math.acos(max(-1.0, min(1.0, -float(gravity_body[2]))))


class GaitClock:
    """The phase in [0, 1) of the gait clock; advanced once per policy step."""

    def __init__(self, contract: PolicyContract):
        self._step = contract.gait_frequency_hz / contract.control_rate_hz
        self.phase = 0.0

    def reset(self, phase: float = 0.0) -> None:
        self.phase = phase % 1.0

    def advance(self) -> None:
        self.phase = (self.phase + self._step) % 1.0


class ObservationBuilder:
    """Builds the policy input from sensor values, into a buffer allocated once.

    ``robots=None`` builds one robot's observation from 1-D inputs (the runtime); ``robots=N`` builds ``[N, obs]``
    from ``[N, ...]`` inputs (the batched training environment), with the same code: the frame is filled along its
    last axis."""

    def __init__(self, contract: PolicyContract, profile: RobotProfile, robots: int | None = None):
        if contract.action_size != profile.num_joints:
            raise ValueError(f"contract has {contract.action_size} actions, robot {profile.name} has {profile.num_joints} joints")
        self.contract = contract
        self._default_pose = profile.default_pose.astype(np.float64)
        self._slices: dict[str, slice] = {}
        start = 0
        for term in contract.terms:
            self._slices[term.name] = slice(start, start + term.size)
            start += term.size
        self._scale = np.concatenate([np.asarray(t.scale, dtype=np.float64) for t in contract.terms])
        lead = () if robots is None else (robots,)
        self._frame = np.zeros(lead + (contract.frame_size,), dtype=np.float64)
        self._history = np.zeros((contract.history_length,) + lead + (contract.frame_size,), dtype=np.float32)
        self._filled = False if robots is None else np.zeros(robots, dtype=bool)

    def reset(self, ids=None) -> None:
        """Forget the history (of robots ``ids`` in a batch; of all when None)."""
        if isinstance(self._filled, np.ndarray):
            self._filled[slice(None) if ids is None else ids] = False
        else:
            self._filled = False

    def build(
        self,
        *,
        base_angular_velocity: np.ndarray,
        projected_gravity: np.ndarray,
        velocity_command: np.ndarray,
        gait_phase,
        joint_position: np.ndarray,
        joint_velocity: np.ndarray,
        last_action: np.ndarray,
    ) -> np.ndarray:
        """Return the observation (a view of an internal float32 buffer, valid until the next call): ``[obs]`` for one
        robot (``gait_phase`` a float), ``[robots, obs]`` for a batch (``gait_phase`` ``[robots]``)."""
        f, s = self._frame, self._slices
        f[..., s["base_angular_velocity"]] = base_angular_velocity
        f[..., s["projected_gravity"]] = projected_gravity
        f[..., s["velocity_command"]] = velocity_command
        clock = s["gait_clock"]
        if isinstance(self._filled, np.ndarray):
            f[:, clock.start] = np.sin(2.0 * np.pi * gait_phase)
            f[:, clock.start + 1] = np.cos(2.0 * np.pi * gait_phase)
        else:  # math on a float: several times faster than numpy's ufuncs in the control loop
            f[clock.start] = math.sin(2.0 * math.pi * gait_phase)
            f[clock.start + 1] = math.cos(2.0 * math.pi * gait_phase)
        np.subtract(joint_position, self._default_pose, out=f[..., s["joint_position_offset"]])
        f[..., s["joint_velocity"]] = joint_velocity
        f[..., s["last_action"]] = last_action
        np.multiply(f, self._scale, out=f)
        clip = self.contract.observation_clip
        clip_into(f, -clip, clip, out=f)
        # Non-finite inputs stay non-finite here on purpose: the caller's safety check must see them.
        if isinstance(self._filled, np.ndarray):
            return self._push_batch(f)
        h = self._history
        if not self._filled:
            h[:] = f
            self._filled = True
        elif len(h) > 1:
            h[1:] = h[:-1].copy()
            h[0] = f
        else:
            h[0] = f
        return h.reshape(-1)

    def _push_batch(self, f: np.ndarray) -> np.ndarray:
        h, fresh = self._history, ~self._filled
        if len(h) > 1:
            h[1:] = h[:-1].copy()
        h[0] = f
        h[:, fresh] = f[fresh]  # a robot's first frame fills its whole history, as for one robot
        self._filled[:] = True
        return np.moveaxis(h, 0, 1).reshape(f.shape[0], -1)


class ActionMapping:
    """Turns a policy output into joint position targets: default + scale * clip(action), inside the limits."""

    def __init__(self, contract: PolicyContract, profile: RobotProfile):
        self.contract = contract
        self._default_pose = profile.default_pose.astype(np.float64)
        self._lower = profile.lower_limits.astype(np.float64)
        self._upper = profile.upper_limits.astype(np.float64)
        self._clipped = np.zeros(contract.action_size)

    def clip_action(self, action: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        c = self.contract.action_clip
        return clip_into(action, -c, c, out=out if out is not None else np.empty(self.contract.action_size))

    def to_targets(self, action: np.ndarray, out: np.ndarray | None = None, clipped_out: np.ndarray | None = None) -> np.ndarray:
        """Joint targets for ``action``; the clipped action (what the policy sees next as its last action) is
        written to ``clipped_out`` when given."""
        out = np.empty(self.contract.action_size) if out is None else out
        clipped = self.clip_action(action, out=self._clipped if clipped_out is None else clipped_out)
        np.multiply(clipped, self.contract.action_scale, out=out)
        out += self._default_pose
        return clip_into(out, self._lower, self._upper, out=out)
