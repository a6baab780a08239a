"""The Pupper walking task over a batch of robots in one process: the per-robot ``PupperEnv`` as array code.

Physics is the engine's batch (``pupper_ros.sim.make_batch``: ``MujocoBatch`` steps every robot in C,
``PyBulletBatch`` one PyBullet world each); observations come from the policy contract's own
``ObservationBuilder`` over ``[robots, ...]``; actions go through the same ``ActionMapping`` and the runtime's target
envelope; every reward term is the same function ``PupperEnv`` calls (training/rewards.py). Commands, the gait clock,
terminations, time-outs, automatic resets, randomization, pushes and action latency are numpy over all robots.
"""

from __future__ import annotations

import math

import numpy as np

from pupper_ros.contract import CURRENT_CONTRACT, ActionMapping, ObservationBuilder, projected_gravity_batch
from pupper_ros.robot_profile import load_robot_profile
from pupper_ros.rotations import rotate
from pupper_ros.safety import TargetEnvelope
from pupper_ros.sim import make_batch, physics_substeps
from pupper_ros.sim.simulation import NOMINAL_GROUND_FRICTION
from training.config import TrainConfig
from training.env import CRITIC_EXTRA
from training.randomization import draw_dynamics, ranges_at
from training.rewards import RewardInputs, total_reward


class BatchedPupperEnv:
    """``robots`` Pupper environments as arrays; ``step(actions [robots, 12])`` advances all and resets the finished."""

    def __init__(self, config: TrainConfig, robots: int, randomize: bool | None = None, threads: int = 0):
        self.config = config
        self.randomize = config.randomization.enabled if randomize is None else randomize
        self.ranges = ranges_at(config.randomization, 0)  # what dynamics are drawn from (set_run_steps)
        self.robots = n = robots
        self.profile = profile = load_robot_profile(config.robot)
        self.contract = CURRENT_CONTRACT
        self.decimation = physics_substeps(self.contract.control_period, config.physics_dt())
        self.physics_dt = self.contract.control_period / self.decimation
        self.sim = make_batch(profile, config.env.engine, robots, physics_dt=self.physics_dt, threads=threads,
                              implicit_pd=config.env.implicit_pd)
        self.dt = self.contract.control_period
        self.builder = ObservationBuilder(self.contract, profile, robots=n)
        self.clean_builder = ObservationBuilder(self.contract, profile, robots=n)
        self.mapping = ActionMapping(self.contract, profile)
        self.envelope = TargetEnvelope.deployed_default(profile, self.dt)
        middle = (profile.lower_limits + profile.upper_limits) / 2
        half_range = (profile.upper_limits - profile.lower_limits) / 2 * config.rewards.soft_joint_limit
        self.soft_joint_lower, self.soft_joint_upper = middle - half_range, middle + half_range
        self.critic_size = self.contract.observation_size + CRITIC_EXTRA
        self.max_episode_steps = int(round(config.env.episode_seconds / self.dt))
        self._resample_steps = max(1, int(round(config.env.command_resample_seconds / self.dt)))
        self._trot_offsets = np.asarray(config.env.trot_offsets, dtype=np.float64)
        self._phase_step = self.contract.gait_frequency_hz / self.contract.control_rate_hz
        self.rng = np.random.default_rng(config.seed)
        j = profile.num_joints
        self.steps = np.zeros(n, dtype=np.int64)
        self.command = np.zeros((n, 3))
        self.phase = np.zeros(n)
        self.last_action = np.zeros((n, j))
        self.previous_targets = np.tile(profile.default_pose, (n, 1))
        self.air_time = np.zeros((n, 4))
        self.last_contact = np.ones((n, 4), dtype=bool)
        self.feet = np.zeros((n, 4, 3))
        self.latency_substeps = np.zeros(n, dtype=np.int64)
        self.friction = np.full(n, NOMINAL_GROUND_FRICTION)
        self.fixed_commands: np.ndarray | None = None  # [robots, 3] held for whole episodes (evaluation)
        self.nonfinite_resets = 0  # robots whose physics went non-finite and were reset
        self.critic_observation = np.zeros((n, self.critic_size), dtype=np.float32)
        self._clipped = np.zeros((n, j))
        self._targets = np.zeros((n, j))
        self.observation = self.reset_robots(np.arange(n), spread_time_outs=True)

    def close(self) -> None:
        self.sim.close()

    # --- resets and randomization ------------------------------------------------------------------------------
    def reset_robots(self, ids: np.ndarray, spread_time_outs: bool = False) -> np.ndarray:
        """Reset robots ``ids`` (new dynamics, pose, command, clock); returns every robot's observation."""
        k, profile, rng = len(ids), self.profile, self.rng
        if k:
            self._randomize(ids)
            noise = self.config.env.initial_joint_noise
            q = np.clip(profile.default_pose + rng.uniform(-noise, noise, (k, profile.num_joints)),
                        profile.lower_limits, profile.upper_limits)
            self.sim.reset(ids, joint_position=q, base_yaw=rng.uniform(-math.pi, math.pi, k))
            self.sim.targets[ids] = q
            self.previous_targets[ids] = q
            self.last_action[ids] = 0.0
            self.air_time[ids] = 0.0
            self.last_contact[ids] = True
            self.steps[ids] = rng.integers(self.max_episode_steps, size=k) if spread_time_outs else 0
            self.phase[ids] = rng.uniform(size=k)
            self.command[ids] = self._commands_for(ids)
            self.builder.reset(ids)
            self.clean_builder.reset(ids)
            self.feet[ids] = self.sim.foot_positions()[ids]
        return self._observe(self.sim.contacts()[0])

    def set_run_steps(self, run_steps: int) -> None:
        """The run has taken ``run_steps`` env steps: draw from the ranges its curriculum has widened to by then."""
        self.ranges = ranges_at(self.config.randomization, run_steps)

    def _randomize(self, ids: np.ndarray) -> None:
        if not self.randomize:
            return
        draw = draw_dynamics(self.ranges, self.profile, self.physics_dt, self.rng, len(ids))
        sim = self.sim
        self.friction[ids] = draw.friction
        sim.set_ground_friction(ids, draw.friction)
        sim.set_mass_scales(ids, draw.base_mass_scale, draw.link_mass_scale)
        sim.base_com_shift[ids] = draw.base_com_shift
        sim.kp[ids] = draw.kp
        sim.kd[ids] = draw.kd
        sim.motor_strength[ids] = draw.motor_strength
        self.latency_substeps[ids] = draw.latency_substeps

    def _commands_for(self, ids: np.ndarray) -> np.ndarray:
        return self._sample_commands(len(ids)) if self.fixed_commands is None else self.fixed_commands[ids]

    def hold_commands(self, commands: np.ndarray) -> np.ndarray:
        """Give each robot a command for good (evaluation) and start every episode afresh; returns the observations."""
        self.fixed_commands = np.asarray(commands, dtype=np.float64).reshape(self.robots, 3)
        self.observation = self.reset_robots(np.arange(self.robots))
        return self.observation

    def _sample_commands(self, k: int) -> np.ndarray:
        e, rng = self.config.env, self.rng
        command = rng.uniform(self.profile.command_low, self.profile.command_high, (k, 3))
        u = rng.uniform(size=k)
        single = (u >= e.zero_command_share) & (u < e.zero_command_share + e.single_axis_command_share)
        axis = rng.integers(3, size=k)
        command[single] *= np.arange(3) == axis[single, None]
        command[u < e.zero_command_share] = 0.0
        return command

    # --- the step ------------------------------------------------------------------------------------------------
    def step(self, actions: np.ndarray):
        """Advance every robot one policy step. Returns (observations, rewards, terminated, truncated, info); robots
        that ended are reset and their observation is the new episode's first."""
        sim = self.sim
        action = self.mapping.clip_action(np.asarray(actions, dtype=np.float64), out=self._clipped)
        targets = self.envelope.step(self.mapping.to_targets(action, out=self._targets, clipped_out=self._clipped),
                                     self.previous_targets.copy())
        latency = np.minimum(self.latency_substeps, self.decimation)
        for substep in range(self.decimation):  # a robot with latency L acts on its new targets from substep L on
            sim.targets[:] = np.where((substep < latency)[:, None], self.previous_targets, targets)
            sim.step(1)
        self.previous_targets = targets
        self._maybe_push()
        self.phase = (self.phase + self._phase_step) % 1.0
        self.steps += 1

        finite = ~sim.take_diverged()
        contacts, base_contact = sim.contacts()
        feet = sim.foot_positions()
        foot_speed = np.linalg.norm((feet[..., :2] - self.feet[..., :2]) / self.dt, axis=2)
        self.feet = feet.copy()
        first_contact = contacts & ~self.last_contact
        self.air_time += self.dt
        swing_time = self.air_time.copy()
        self.air_time[contacts] = 0.0
        self.last_contact = contacts

        state = self._body_state()
        q, position, orientation, linear, angular, gravity = (state[k] for k in (
            "joint_position", "position", "orientation", "linear", "angular", "gravity"))
        tilt = np.arccos(np.clip(-gravity[:, 2], -1.0, 1.0))
        terminated = ((tilt > self.profile.tilt_limit) | (position[:, 2] < self.config.env.min_base_height)
                      | base_contact | ~finite)
        moving = np.linalg.norm(self.command, axis=1) >= self.config.env.standing_command_threshold
        foot_phase = (self.phase[:, None] + self._trot_offsets) % 1.0
        desired_stance = (foot_phase < 0.5) | ~moving[:, None]
        inputs = RewardInputs(
            command=self.command, base_linear_velocity=linear, base_angular_velocity=angular, projected_gravity=gravity,
            joint_position_offset=q - self.profile.default_pose, joint_position=q, soft_joint_lower=self.soft_joint_lower,
            soft_joint_upper=self.soft_joint_upper, joint_torque=sim.torque, action=action, last_action=self.last_action,
            foot_contact=contacts, first_contact=first_contact, air_time=swing_time, foot_speed_xy=foot_speed,
            desired_stance=desired_stance, terminated=terminated, tracking_sigma=self.config.rewards.tracking_sigma,
            air_time_target=self.config.rewards.air_time_target, moving_command=moving,
            foot_height=feet[..., 2] - sim.foot_radius, swing_height_target=self.config.rewards.swing_height_target,
        )
        reward, terms = total_reward(inputs, self.config.rewards.weights, self.dt, self.config.rewards.only_positive)
        reward = np.where(finite, reward, 0.0)
        self.last_action = action.copy()
        truncated = (self.steps >= self.max_episode_steps) & ~terminated
        resample = (self.steps % self._resample_steps == 0) & ~(terminated | truncated)
        if resample.any():
            self.command[resample] = self._commands_for(np.flatnonzero(resample))
        info = {"reward_terms": {name: np.where(finite, value, 0.0) for name, value in terms.items()},
                "base_linear_velocity": linear, "base_angular_velocity": angular, "command": self.command.copy(),
                "base_position": position, "joint_torque": sim.torque.copy(), "joint_velocity": state["joint_velocity"]}
        if (~finite).any():
            self.nonfinite_resets += int((~finite).sum())
        done = np.flatnonzero(terminated | truncated)
        self.observation = self.reset_robots(done) if done.size else self._observe(contacts, state)
        return self.observation, reward.astype(np.float32), terminated, truncated, info

    def _maybe_push(self) -> None:
        r = self.ranges
        if not self.randomize or r.push_velocity <= 0:
            return
        pushed = np.flatnonzero(self.rng.uniform(size=self.robots) < self.dt / r.push_interval_seconds)
        if pushed.size:
            kick = self.rng.uniform(-r.push_velocity, r.push_velocity, (pushed.size, 2))
            self.sim.push(pushed, np.concatenate([kick, np.zeros((pushed.size, 1))], axis=1))

    def _body_state(self) -> dict[str, np.ndarray]:
        """Joints, base pose, base velocities in the body frame and projected gravity, all robots."""
        q, qd = self.sim.joint_states()
        position, orientation = self.sim.base_pose()
        linear_world, angular_world = self.sim.base_velocity()
        conjugate = orientation * np.array([-1.0, -1.0, -1.0, 1.0])
        return {"joint_position": q, "joint_velocity": qd, "position": position, "orientation": orientation,
                "linear": rotate(conjugate, linear_world), "angular": rotate(conjugate, angular_world),
                "gravity": projected_gravity_batch(orientation)}

    def _observe(self, contacts: np.ndarray, state: dict[str, np.ndarray] | None = None) -> np.ndarray:
        rng, nz = self.rng, self.config.noise
        state = self._body_state() if state is None else state
        q, qd, position, linear, angular, gravity = (state[k] for k in (
            "joint_position", "joint_velocity", "position", "linear", "angular", "gravity"))
        values = dict(base_angular_velocity=angular, projected_gravity=gravity, velocity_command=self.command,
                      gait_phase=self.phase, joint_position=q, joint_velocity=qd, last_action=self.last_action)
        clean = self.clean_builder.build(**values)
        if self.randomize:
            n, j = self.robots, self.profile.num_joints
            values["base_angular_velocity"] = angular + rng.uniform(-nz.angular_velocity, nz.angular_velocity, (n, 3))
            noisy = gravity + rng.uniform(-nz.gravity, nz.gravity, (n, 3))
            values["projected_gravity"] = noisy / np.linalg.norm(noisy, axis=1, keepdims=True)
            values["joint_position"] = q + rng.uniform(-nz.joint_position, nz.joint_position, (n, j))
            values["joint_velocity"] = qd + rng.uniform(-nz.joint_velocity, nz.joint_velocity, (n, j))
        observation = self.builder.build(**values).copy()  # the builder's buffer is rewritten next step
        c = self.critic_observation
        size = self.contract.observation_size
        c[:, :size] = clean
        c[:, size:size + 3] = linear * 2.0
        c[:, size + 3:size + 7] = contacts
        c[:, size + 7] = position[:, 2] * 10.0 - 1.5
        c[:, size + 8] = self.friction - 1.0
        c[:, size + 9] = self.sim.motor_strength.mean(axis=1) - 1.0
        return observation
