"""Training configuration: every setting in one tree of dataclasses, read from YAML with strict checking.

``training/recipes/default.yaml`` holds the defaults a run starts from; a user file overrides any subset of it. Unknown keys
and out-of-range values are errors naming the key. The resolved tree is saved with each run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

RECIPES = Path(__file__).with_name("recipes")  # the recipes a run starts from (training/recipes/*.yaml)
DEFAULT_CONFIG = RECIPES / "default.yaml"


class ConfigError(ValueError):
    """A configuration key that does not exist or a value outside its range."""


def _range(name: str, pair, low: float = float("-inf"), high: float = float("inf")) -> tuple[float, float]:
    if not (isinstance(pair, (list, tuple)) and len(pair) == 2):
        raise ConfigError(f"{name} must be [low, high], got {pair!r}")
    lo, hi = float(pair[0]), float(pair[1])
    if not (low <= lo <= hi <= high):
        raise ConfigError(f"{name} must satisfy {low} <= low <= high <= {high}, got [{lo}, {hi}]")
    return (lo, hi)


def _at_least(name: str, value, low: float, strict: bool = False) -> None:
    if value < low or (strict and value == low):
        raise ConfigError(f"{name} must be {'>' if strict else '>='} {low}, got {value!r}")


@dataclass
class EnvConfig:
    engine: str = "pybullet"  # physics engine (pupper_ros.sim.ENGINES); training's is PyBullet
    batched: bool = False  # every robot's environment as arrays (training/batch_env.py), not one object per robot
    physics_dt: float = 0.0  # s; 0 = the robot profile's step for this engine (pupper_ros.sim.default_physics_dt)
    # MuJoCo only: the PD as implicit actuators (pupper_ros/sim/mujoco_sim.py), stable for Pupper v2 at 4 ms (its
    # default step then), though a policy's walk holds only to about 1 ms, the step the v2 recipe trains at
    # (docs/simulation.md)
    implicit_pd: bool = False
    episode_seconds: float = 20.0
    command_resample_seconds: float = 5.0
    zero_command_share: float = 0.15  # commands that are exactly zero, so the policy learns to stand
    single_axis_command_share: float = 0.45  # commands on one axis only (vx, vy or yaw rate)
    standing_command_threshold: float = 0.1  # below this command norm the gait reward asks for all feet down
    trot_offsets: list = field(default_factory=lambda: [0.0, 0.5, 0.5, 0.0])  # gait phase per foot, profile order
    min_base_height: float = 0.05
    initial_joint_noise: float = 0.1

    def validate(self) -> None:
        from pupper_ros.sim import ENGINES

        if self.engine not in ENGINES:
            raise ConfigError(f"env.engine must be one of {', '.join(ENGINES)}, got {self.engine!r}")
        if self.implicit_pd and self.engine != "mujoco":
            raise ConfigError(f"env.implicit_pd needs env.engine mujoco (the actuators are MuJoCo's), got {self.engine!r}")
        _at_least("env.physics_dt", self.physics_dt, 0.0)
        _at_least("env.episode_seconds", self.episode_seconds, 0.0, strict=True)
        _at_least("env.command_resample_seconds", self.command_resample_seconds, 0.0, strict=True)
        for key in ("zero_command_share", "single_axis_command_share"):
            _range(f"env.{key}", [0.0, getattr(self, key)], 0.0, 1.0)
        if self.zero_command_share + self.single_axis_command_share > 1.0:
            raise ConfigError("env.zero_command_share + env.single_axis_command_share must be <= 1")
        if len(self.trot_offsets) != 4:
            raise ConfigError("env.trot_offsets needs one phase offset per foot (4)")


@dataclass
class NoiseConfig:
    """Uniform sensor noise half-widths added to what the policy sees."""

    angular_velocity: float = 0.1
    gravity: float = 0.05
    joint_position: float = 0.02
    joint_velocity: float = 1.0

    def validate(self) -> None:
        for f in dataclasses.fields(self):
            _at_least(f"noise.{f.name}", getattr(self, f.name), 0.0)


@dataclass
class RandomizationConfig:
    enabled: bool = True
    friction: tuple = (0.6, 1.4)
    base_mass_scale: tuple = (0.9, 1.3)
    link_mass_scale: tuple = (0.9, 1.1)
    com_shift_x: tuple = (-0.02, 0.03)  # m, base centre of mass
    com_shift_yz: tuple = (-0.005, 0.005)
    kp_scale: tuple = (0.6, 1.1)
    kd_scale: tuple = (0.8, 1.5)
    motor_strength: tuple = (0.8, 1.1)
    latency_seconds: tuple = (0.0, 0.02)  # action latency, in physics steps
    push_interval_seconds: float = 4.0  # mean time between pushes
    push_velocity: float = 0.3  # m/s, largest horizontal velocity change of a push
    # A curriculum (training/randomization.py, ranges_at): robots are drawn from ``start`` (any of the ranges and
    # push settings above) until the run has taken ``widen_from_steps`` env steps; from there to ``widen_until_steps``
    # each of them moves linearly to its value above, which holds after. An empty ``start``: no curriculum.
    start: dict = field(default_factory=dict)
    widen_from_steps: int = 0
    widen_until_steps: int = 0

    def validate(self, where: str = "randomization") -> None:
        for name in ("friction", "base_mass_scale", "link_mass_scale", "kp_scale", "kd_scale", "motor_strength"):
            setattr(self, name, _range(f"{where}.{name}", getattr(self, name), 0.0))
        self.com_shift_x = _range(f"{where}.com_shift_x", self.com_shift_x, -0.05, 0.05)
        self.com_shift_yz = _range(f"{where}.com_shift_yz", self.com_shift_yz, -0.05, 0.05)
        self.latency_seconds = _range(f"{where}.latency_seconds", self.latency_seconds, 0.0, 0.1)
        _at_least(f"{where}.push_interval_seconds", self.push_interval_seconds, 0.0, strict=True)
        _at_least(f"{where}.push_velocity", self.push_velocity, 0.0)
        if not self.start:
            return
        widened = set(CURRICULUM_KEYS)
        unknown = sorted(set(self.start) - widened)
        if unknown:
            raise ConfigError(f"{where}.start: unknown key(s) {', '.join(unknown)}; a curriculum widens "
                              f"{', '.join(CURRICULUM_KEYS)}")
        start = RandomizationConfig(**{k: getattr(self, k) for k in widened})
        _merge(start, self.start, f"{where}.start")
        start.validate(f"{where}.start")
        self.start = {k: list(v) if isinstance(v, tuple) else v for k, v in
                      ((k, getattr(start, k)) for k in self.start)}
        _at_least(f"{where}.widen_from_steps", self.widen_from_steps, 0)
        if self.widen_until_steps < self.widen_from_steps:
            raise ConfigError(f"{where}.widen_until_steps must be >= widen_from_steps ({self.widen_from_steps}), "
                              f"got {self.widen_until_steps}")


# What a randomization curriculum may widen: every range and the pushes.
CURRICULUM_KEYS = ("friction", "base_mass_scale", "link_mass_scale", "com_shift_x", "com_shift_yz", "kp_scale",
                   "kd_scale", "motor_strength", "latency_seconds", "push_interval_seconds", "push_velocity")

# Named sets of ranges a recipe may ask for (``randomization.ranges: NAME``, and a curriculum's ``start: NAME``), each
# as it differs from the Pupper v3 reference ranges, which are RandomizationConfig's own. "narrowed": the training
# default (training/recipes/default.yaml), because a few million CPU steps did not learn a gait under the reference
# ranges (docs/performance.md, "The Pupper v3 reference randomization as the training default").
_NARROWED = {"friction": (0.7, 1.3), "base_mass_scale": (0.95, 1.15), "kp_scale": (0.8, 1.1), "kd_scale": (0.9, 1.2),
             "motor_strength": (0.9, 1.1), "latency_seconds": (0.0, 0.01), "push_interval_seconds": 5.0, "push_velocity": 0.2}
# "strength_narrowed": the reference ranges but for the three that set how strong the robot is against its load (Kp,
# motor strength, base mass), narrowed; the batched recipe's (seeds 1-3 walked at 11.6, 18.3 and 18.7 min, under
# "narrowed" at 16.9, more than 20 and 19.7; docs/performance.md, 2026-12-07).
RANGE_PRESETS = {
    "reference": {},
    "narrowed": _NARROWED,
    "strength_narrowed": {k: _NARROWED[k] for k in ("kp_scale", "motor_strength", "base_mass_scale")},
}


def _preset(name, where: str) -> dict:
    if name not in RANGE_PRESETS:
        raise ConfigError(f"{where}: unknown set of ranges {name!r}; known: {', '.join(RANGE_PRESETS)}")
    return RANGE_PRESETS[name]


def _randomization_values(values, where: str) -> dict:
    """A recipe's randomization section with its names resolved: ``ranges: NAME`` first sets every range and push
    setting to that preset's (the reference's where it says nothing), then the section's own keys apply; ``start:
    NAME`` is that preset's ranges."""
    if not isinstance(values, dict):
        raise ConfigError(f"{where} must be a mapping, got {values!r}")
    values = dict(values)
    resolved = {}
    if "ranges" in values:
        reference = RandomizationConfig()
        preset = _preset(values.pop("ranges"), f"{where}.ranges")
        resolved = {k: preset.get(k, getattr(reference, k)) for k in CURRICULUM_KEYS}
    if isinstance(values.get("start"), str):
        start = _preset(values["start"], f"{where}.start")
        if not start:
            raise ConfigError(f"{where}.start: {values['start']!r} are the reference ranges themselves; a curriculum "
                              f"starts from narrower ones ({', '.join(k for k, v in RANGE_PRESETS.items() if v)})")
        values["start"] = dict(start)
    return resolved | values


@dataclass
class RewardConfig:
    tracking_sigma: float = 0.25
    air_time_target: float = 0.2  # s, half a gait period
    swing_height_target: float = 0.04  # m, foot clearance asked of swing feet
    only_positive: bool = True  # clip the per-step sum (termination excluded) at zero, as legged_gym
    soft_joint_limit: float = 0.9  # share of each joint's range, about its middle, inside which joint_limits is 0
    weights: dict = field(default_factory=dict)

    def validate(self) -> None:
        from training.rewards import REWARD_TERMS

        _at_least("rewards.tracking_sigma", self.tracking_sigma, 0.0, strict=True)
        if not 0.0 < self.soft_joint_limit <= 1.0:
            raise ConfigError(f"rewards.soft_joint_limit must be in (0, 1], got {self.soft_joint_limit!r}")
        unknown = sorted(set(self.weights) - set(REWARD_TERMS))
        if unknown:
            raise ConfigError(f"rewards.weights: unknown term(s) {', '.join(unknown)}; known: {', '.join(REWARD_TERMS)}")


@dataclass
class PolicyConfig:
    actor_hidden: list = field(default_factory=lambda: [256, 128, 128])
    critic_hidden: list = field(default_factory=lambda: [256, 128, 128])
    activation: str = "elu"
    init_std: float = 0.5
    symmetric: bool = False  # actor and critic mirror-symmetric by construction (training/symmetric_model.py)

    def validate(self) -> None:
        for name in ("actor_hidden", "critic_hidden"):
            if not self.__dict__[name] or any(int(h) <= 0 for h in self.__dict__[name]):
                raise ConfigError(f"policy.{name} must be a non-empty list of positive layer widths")
        _at_least("policy.init_std", self.init_std, 0.0, strict=True)


@dataclass
class PPOConfig:
    steps_per_env: int = 24
    learning_epochs: int = 5
    mini_batches: int = 4
    clip: float = 0.2
    gamma: float = 0.99
    lam: float = 0.95
    learning_rate: float = 1e-3
    desired_kl: float = 0.01
    entropy_coef: float = 0.005
    value_loss_coef: float = 1.0
    max_grad_norm: float = 1.0
    symmetry: bool = True  # mirror augmentation (left/right) of every mini-batch
    overlap_update: bool = False  # workers collect the next rollout during the update, acting one update behind

    def validate(self) -> None:
        for name in ("steps_per_env", "learning_epochs", "mini_batches"):
            _at_least(f"ppo.{name}", getattr(self, name), 1)
        for name in ("gamma", "lam"):
            _range(f"ppo.{name}", [0.0, getattr(self, name)], 0.0, 1.0)
        for name in ("clip", "learning_rate", "desired_kl"):
            _at_least(f"ppo.{name}", getattr(self, name), 0.0, strict=True)


def derived_seed(seed: int, *parts: int) -> int:
    """The seed of one part of a run (a batch shard, the stretch after a resume), from the run's ``seed`` and the
    integers that tell the part apart: random streams of its own, the same each time for the same parts."""
    return int(np.random.SeedSequence([seed, *parts]).generate_state(1)[0] % 2**31)


@dataclass
class TrainConfig:
    robot: str = "pupper_v3"
    seed: int = 1
    envs: int = 32
    workers: int = 0  # processes stepping the environments; 0 = one per core (a MuJoCo batch: one)
    steps: int = 20_000_000  # environment steps in total
    save_every: int = 50  # iterations between checkpoints
    env: EnvConfig = field(default_factory=EnvConfig)
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    randomization: RandomizationConfig = field(default_factory=RandomizationConfig)
    rewards: RewardConfig = field(default_factory=RewardConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    ppo: PPOConfig = field(default_factory=PPOConfig)

    def validate(self) -> "TrainConfig":
        _at_least("envs", self.envs, 1)
        _at_least("workers", self.workers, 0)
        _at_least("steps", self.steps, 1)
        _at_least("save_every", self.save_every, 1)
        for section in (self.env, self.noise, self.randomization, self.rewards, self.policy, self.ppo):
            section.validate()
        if self.env.physics_dt:
            from pupper_ros.contract import CURRENT_CONTRACT
            from pupper_ros.sim import physics_substeps

            try:
                physics_substeps(CURRENT_CONTRACT.control_period, self.env.physics_dt)
            except ValueError as exc:
                raise ConfigError(f"env.physics_dt: {exc}") from exc
        return self

    def to_dict(self) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def physics_dt(self) -> float:
        """The physics step the environment runs: ``env.physics_dt``, or if that is 0 the robot profile's step for
        the engine (``pupper_ros.sim.default_physics_dt``)."""
        if self.env.physics_dt:
            return self.env.physics_dt
        from pupper_ros.robot_profile import load_robot_profile
        from pupper_ros.sim import default_physics_dt

        return default_physics_dt(load_robot_profile(self.robot), self.env.engine, self.env.implicit_pd)

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]


def _merge(target, values: dict, path: str) -> None:
    if not isinstance(values, dict):
        raise ConfigError(f"{path or 'config'} must be a mapping, got {values!r}")
    known = {f.name: f for f in dataclasses.fields(target)}
    for key, value in values.items():
        where = f"{path}.{key}" if path else key
        if key not in known:
            raise ConfigError(f"unknown config key '{where}'; known keys here: {', '.join(known)}")
        current = getattr(target, key)
        if isinstance(current, RandomizationConfig):
            _merge(current, _randomization_values(value, where), where)
        elif dataclasses.is_dataclass(current):
            _merge(current, value, where)
        elif isinstance(current, dict):
            if not isinstance(value, dict):
                raise ConfigError(f"{where} must be a mapping")
            current.update(value)
        else:
            expected = type(current)
            if expected in (int, float) and isinstance(value, bool) or (expected is bool and not isinstance(value, bool)):
                raise ConfigError(f"{where} must be {expected.__name__}, got {value!r}")
            try:
                setattr(target, key, expected(value) if expected in (int, float, str) else value)
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"{where} must be {expected.__name__}, got {value!r}") from exc


def _recipe_layers(path: Path, seen: tuple = ()) -> list[dict]:
    """The mappings a recipe file stands for, base first: a recipe may start from another with ``extends: FILE``
    (relative to its own directory), which it then overrides key by key."""
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}" + (f" (extended by {seen[-1]})" if seen else ""))
    if path.resolve() in seen:
        raise ConfigError(f"config files extend each other in a circle: {' -> '.join(str(p) for p in seen + (path,))}")
    values = yaml.safe_load(path.read_text()) or {}
    base = values.pop("extends", None) if isinstance(values, dict) else None
    if base is None:
        return [values]
    return _recipe_layers(path.parent / str(base), seen + (path.resolve(),)) + [values]


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """The default config, then the file at ``path`` (after any recipe it extends), then ``overrides``; validated."""
    config = TrainConfig()
    _merge(config, yaml.safe_load(DEFAULT_CONFIG.read_text()) or {}, "")
    if path is not None:
        for values in _recipe_layers(Path(path)):
            _merge(config, values, "")
    if overrides:
        _merge(config, overrides, "")
    return config.validate()
