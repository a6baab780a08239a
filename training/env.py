"""The Pupper walking task as a Gymnasium environment over the shared simulation (PyBullet unless ``env.engine``
says MuJoCo).

Observations come from the same ``ObservationBuilder`` the runtime uses, fed with noisy simulated sensor values;
actions go through the same ``ActionMapping``; the actuators are the shared simulation's PD at the physics rate.
Time-outs are reported as ``truncated``, falls as ``terminated``, so PPO bootstraps only the former.
"""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np

from pupper_ros.contract import CURRENT_CONTRACT, ActionMapping, GaitClock, ObservationBuilder, projected_gravity
from pupper_ros.robot_profile import load_robot_profile
from pupper_ros.safety import TargetEnvelope
from pupper_ros.sim import make_simulation, physics_substeps
from pupper_ros.sim.simulation import tilt
from training.config import TrainConfig, load_config
from training.randomization import draw_dynamics, nominal_dynamics, ranges_at
from training.rewards import RewardInputs, total_reward

CRITIC_EXTRA = 3 + 4 + 1 + 1 + 1  # base linear velocity, foot contacts, base height, friction, motor strength


class PupperEnv(gym.Env):
    metadata = {"render_modes": ["rgb_array"], "render_fps": int(CURRENT_CONTRACT.control_rate_hz)}

    def __init__(self, config: TrainConfig | None = None, render_mode: str | None = None, randomize: bool | None = None):
        self.config = config if config is not None else load_config()
        self.randomize = self.config.randomization.enabled if randomize is None else randomize
        self.ranges = ranges_at(self.config.randomization, 0)  # what dynamics are drawn from (set_run_steps)
        self.render_mode = render_mode
        self.profile = load_robot_profile(self.config.robot)
        self.contract = CURRENT_CONTRACT
        self.decimation = physics_substeps(self.contract.control_period, self.config.physics_dt())
        self.physics_dt = self.contract.control_period / self.decimation
        options = {"implicit_pd": True} if self.config.env.implicit_pd else {}
        self.sim = make_simulation(self.profile, self.config.env.engine, physics_dt=self.physics_dt, **options)
        self.dt = self.contract.control_period
        self.builder = ObservationBuilder(self.contract, self.profile)  # what the policy sees (noisy)
        self.clean_builder = ObservationBuilder(self.contract, self.profile)  # the same without noise, for the critic
        self.mapping = ActionMapping(self.contract, self.profile)
        self.envelope = TargetEnvelope.deployed_default(self.profile, self.dt)  # what the runtime lets through
        middle = (self.profile.lower_limits + self.profile.upper_limits) / 2
        half_range = (self.profile.upper_limits - self.profile.lower_limits) / 2 * self.config.rewards.soft_joint_limit
        self.soft_joint_lower, self.soft_joint_upper = middle - half_range, middle + half_range
        self.clock = GaitClock(self.contract)
        clip, action_clip = self.contract.observation_clip, self.contract.action_clip
        self.observation_space = gym.spaces.Box(-clip, clip, (self.contract.observation_size,), np.float32)
        self.action_space = gym.spaces.Box(-action_clip, action_clip, (self.contract.action_size,), np.float32)
        self.critic_size = self.contract.observation_size + CRITIC_EXTRA
        self.max_episode_steps = int(round(self.config.env.episode_seconds / self.dt))
        self._resample_steps = max(1, int(round(self.config.env.command_resample_seconds / self.dt)))
        self._trot_offsets = np.asarray(self.config.env.trot_offsets, dtype=np.float64)
        self._fixed_command: np.ndarray | None = None
        self.command = np.zeros(3)
        self.friction = 1.0
        self._clean_observation = np.zeros(self.contract.observation_size, dtype=np.float32)
        self._reset_episode_state()

    def _reset_episode_state(self) -> None:
        n = self.profile.num_joints
        self.steps = 0
        self.last_action = np.zeros(n)
        self.previous_targets = self.profile.default_pose.copy()
        self.air_time = np.zeros(4)
        self.last_contact = np.ones(4, dtype=bool)
        self.latency_substeps = 0
        self.feet = None

    # --- randomization ---------------------------------------------------------------------------------------
    def set_run_steps(self, run_steps: int) -> None:
        """The run has taken ``run_steps`` env steps: draw from the ranges its curriculum has widened to by then."""
        self.ranges = ranges_at(self.config.randomization, run_steps)

    def _randomize_dynamics(self) -> None:
        if self.randomize:
            draw = draw_dynamics(self.ranges, self.profile, self.physics_dt, self.np_random, 1)
        else:
            draw = nominal_dynamics(self.profile, 1)
        sim = self.sim
        self.friction = float(draw.friction[0])
        sim.set_ground_friction(self.friction)
        sim.set_mass_scales(float(draw.base_mass_scale[0]), draw.link_mass_scale[0])
        sim.base_com_shift[:] = draw.base_com_shift[0]
        sim.kp[:] = draw.kp[0, 0]
        sim.kd[:] = draw.kd[0, 0]
        sim.motor_strength[:] = draw.motor_strength[0]
        self.latency_substeps = int(draw.latency_substeps[0])

    def _sample_command(self) -> np.ndarray:
        if self._fixed_command is not None:
            return self._fixed_command.copy()
        e, rng = self.config.env, self.np_random
        low, high = self.profile.command_low, self.profile.command_high
        u = rng.uniform()
        if u < e.zero_command_share:
            return np.zeros(3)
        command = rng.uniform(low, high)
        if u < e.zero_command_share + e.single_axis_command_share:
            axis = rng.integers(3)
            command = np.where(np.arange(3) == axis, command, 0.0)
        return command

    # --- gymnasium API ---------------------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        options = options or {}
        self._fixed_command = None if options.get("command") is None else np.asarray(options["command"], dtype=np.float64)
        self._reset_episode_state()
        self._randomize_dynamics()  # after the episode state, which used to zero the latency just drawn
        noise = self.config.env.initial_joint_noise
        q = self.profile.default_pose + self.np_random.uniform(-noise, noise, self.profile.num_joints)
        q = np.clip(q, self.profile.lower_limits, self.profile.upper_limits)
        self.sim.reset(joint_position=q, base_yaw=float(self.np_random.uniform(-math.pi, math.pi)))
        self.sim.set_targets(q)
        self.previous_targets = q.copy()
        self.builder.reset()
        self.clean_builder.reset()
        self.clock.reset(float(self.np_random.uniform()))
        self.command = self._sample_command()
        state = self.sim.state()
        self.feet = self.sim.foot_positions()
        return self._observe(state), {"command": self.command.copy()}

    def step(self, action):
        action = self.mapping.clip_action(np.asarray(action, dtype=np.float64))
        targets = self.envelope.step(self.mapping.to_targets(action), self.previous_targets.copy())
        sim = self.sim
        if self.latency_substeps > 0:
            sim.set_targets(self.previous_targets)
            sim.step(min(self.latency_substeps, self.decimation))
        sim.set_targets(targets)
        sim.step(self.decimation - min(self.latency_substeps, self.decimation))
        self.previous_targets = targets
        self._maybe_push()
        self.clock.advance()
        self.steps += 1

        state = sim.state()
        contacts, base_contact = self._contacts()
        feet = sim.foot_positions()
        foot_speed = np.linalg.norm((feet[:, :2] - self.feet[:, :2]) / self.dt, axis=1)
        self.feet = feet
        first_contact = contacts & ~self.last_contact
        self.air_time += self.dt
        swing_time = self.air_time.copy()
        self.air_time[contacts] = 0.0
        self.last_contact = contacts

        gravity = projected_gravity(state.base_orientation)
        terminated = bool(
            tilt(state.base_orientation) > self.profile.tilt_limit
            or state.base_position[2] < self.config.env.min_base_height
            or base_contact
            or not np.all(np.isfinite(state.joint_position))
        )
        moving = bool(np.linalg.norm(self.command) >= self.config.env.standing_command_threshold)
        foot_phase = (self.clock.phase + self._trot_offsets) % 1.0
        desired_stance = foot_phase < 0.5 if moving else np.ones(4, dtype=bool)
        inputs = RewardInputs(
            command=self.command, base_linear_velocity=state.base_linear_velocity,
            base_angular_velocity=state.base_angular_velocity, projected_gravity=gravity,
            joint_position_offset=state.joint_position - self.profile.default_pose, joint_position=state.joint_position,
            soft_joint_lower=self.soft_joint_lower, soft_joint_upper=self.soft_joint_upper, joint_torque=state.joint_torque,
            action=action, last_action=self.last_action, foot_contact=contacts, first_contact=first_contact,
            air_time=swing_time, foot_speed_xy=foot_speed, desired_stance=desired_stance, terminated=terminated,
            tracking_sigma=self.config.rewards.tracking_sigma, air_time_target=self.config.rewards.air_time_target,
            moving_command=moving, foot_height=feet[:, 2] - self.sim.foot_radius,
            swing_height_target=self.config.rewards.swing_height_target,
        )
        reward, terms = total_reward(inputs, self.config.rewards.weights, self.dt, self.config.rewards.only_positive)
        self.last_action = action
        truncated = self.steps >= self.max_episode_steps and not terminated
        if self.steps % self._resample_steps == 0:
            self.command = self._sample_command()
        info = {
            "reward_terms": {name: float(value) for name, value in terms.items()},
            "command": self.command.copy(),
            "base_linear_velocity": state.base_linear_velocity,
            "base_angular_velocity": state.base_angular_velocity,
            "base_position": state.base_position,
            "joint_torque": state.joint_torque,
            "joint_velocity": state.joint_velocity,
        }
        return self._observe(state, contacts), float(reward), terminated, bool(truncated), info

    # --- pieces ------------------------------------------------------------------------------------------------
    def _contacts(self) -> tuple[np.ndarray, bool]:
        return self.sim.contacts()

    def _maybe_push(self) -> None:
        r = self.ranges
        if not self.randomize or r.push_velocity <= 0 or self.np_random.uniform() >= self.dt / r.push_interval_seconds:
            return
        kick = self.np_random.uniform(-r.push_velocity, r.push_velocity, 2)
        self.sim.push([kick[0], kick[1], 0.0])

    def _observe(self, state, contacts: np.ndarray | None = None) -> np.ndarray:
        n, rng = self.config.noise, self.np_random
        gravity = projected_gravity(state.base_orientation)
        values = dict(
            base_angular_velocity=state.base_angular_velocity, projected_gravity=gravity,
            velocity_command=self.command, gait_phase=self.clock.phase, joint_position=state.joint_position,
            joint_velocity=state.joint_velocity, last_action=self.last_action,
        )
        self._clean_observation[:] = self.clean_builder.build(**values)
        if self.randomize:
            nj = self.profile.num_joints
            values["base_angular_velocity"] = state.base_angular_velocity + rng.uniform(-n.angular_velocity, n.angular_velocity, 3)
            noisy_gravity = gravity + rng.uniform(-n.gravity, n.gravity, 3)
            values["projected_gravity"] = noisy_gravity / np.linalg.norm(noisy_gravity)
            values["joint_position"] = state.joint_position + rng.uniform(-n.joint_position, n.joint_position, nj)
            values["joint_velocity"] = state.joint_velocity + rng.uniform(-n.joint_velocity, n.joint_velocity, nj)
        observation = self.builder.build(**values).copy()
        contacts = self._contacts()[0] if contacts is None else contacts
        self.critic_observation = np.concatenate([
            self._clean_observation,
            state.base_linear_velocity * 2.0,
            contacts.astype(np.float64),
            [state.base_position[2] * 10.0 - 1.5, self.friction - 1.0, float(np.mean(self.sim.motor_strength)) - 1.0],
        ]).astype(np.float32)
        return observation

    def render(self):
        return self.sim.render() if self.render_mode == "rgb_array" else None

    def close(self):
        self.sim.close()
