"""The training environment: Gymnasium's checker, determinism, reward terms, randomization ranges, mirror symmetry."""

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from pupper_ros.contract import CURRENT_CONTRACT
from pupper_ros.safety import SafetyLimits, joint_speed_limit
from training import rewards
from training.config import ConfigError, load_config
from training.env import PupperEnv
from training.symmetry import mirror_maps


@pytest.fixture(scope="module")
def env():
    e = PupperEnv()
    yield e
    e.close()


def test_gymnasium_env_checker_passes(env):
    check_env(env, skip_render_check=True)


def test_same_seed_same_first_100_steps():
    runs = []
    for _ in range(2):
        e = PupperEnv()
        obs, _ = e.reset(seed=7)
        rng = np.random.default_rng(3)
        trace = [obs]
        for _ in range(100):
            obs, reward, terminated, truncated, _ = e.step(rng.uniform(-1, 1, 12).astype(np.float32))
            trace.append(np.append(obs, reward))
            if terminated or truncated:
                obs, _ = e.reset()
        e.close()
        runs.append(trace)
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)


def test_different_seeds_differ():
    first = []
    for seed in (1, 2):
        e = PupperEnv()
        first.append(e.reset(seed=seed)[0])
        e.close()
    assert not np.array_equal(*first)


def make_inputs(**changes):
    base = dict(
        command=np.array([0.5, 0.0, 0.0]), base_linear_velocity=np.array([0.5, 0.0, 0.0]),
        base_angular_velocity=np.zeros(3), projected_gravity=np.array([0.0, 0.0, -1.0]),
        joint_position_offset=np.zeros(12), joint_position=np.zeros(12), soft_joint_lower=np.full(12, -1.0),
        soft_joint_upper=np.full(12, 2.0), joint_torque=np.zeros(12), action=np.zeros(12), last_action=np.zeros(12),
        foot_contact=np.array([True, False, False, True]), first_contact=np.zeros(4, dtype=bool),
        air_time=np.zeros(4), foot_speed_xy=np.zeros(4), desired_stance=np.array([True, False, False, True]),
        terminated=False, tracking_sigma=0.25, air_time_target=0.2, moving_command=True,
        foot_height=np.zeros(4), swing_height_target=0.04,
    )
    base.update(changes)
    return rewards.RewardInputs(**base)


@pytest.mark.parametrize(
    "term, changes, expected",
    [
        ("tracking_linear_velocity", {}, 1.0),
        ("tracking_linear_velocity", {"base_linear_velocity": np.array([0.0, 0.5, 0.0])}, np.exp(-0.5 / 0.25)),
        ("tracking_yaw_rate", {"base_angular_velocity": np.array([0.0, 0.0, 0.5])}, np.exp(-0.25 / 0.25)),
        ("vertical_velocity", {"base_linear_velocity": np.array([0.5, 0.0, 0.3])}, 0.09),
        ("roll_pitch_rate", {"base_angular_velocity": np.array([1.0, 2.0, 9.0])}, 5.0),
        ("orientation", {"projected_gravity": np.array([0.6, 0.0, -0.8])}, 0.36),
        ("torques", {"joint_torque": np.full(12, 0.5)}, 3.0),
        ("action_rate", {"action": np.ones(12), "last_action": np.zeros(12)}, 12.0),
        ("feet_air_time", {"first_contact": np.array([True, True, False, False]), "air_time": np.array([0.3, 0.1, 5, 5])}, 0.0),
        ("feet_air_time", {"first_contact": np.array([True, False, False, False]), "air_time": np.array([0.3, 0, 0, 0])}, 0.1),
        ("feet_air_time", {"first_contact": np.array([True, False, False, False]), "air_time": np.array([0.3, 0, 0, 0]),
                           "moving_command": False}, 0.0),
        ("foot_slip", {"foot_speed_xy": np.array([1.0, 3.0, 0.0, 0.5])}, 1.25),
        ("gait_contact", {}, 1.0),
        ("gait_contact", {"foot_contact": np.array([True, True, True, True])}, 0.5),
        ("pose", {"joint_position_offset": np.full(12, 0.1)}, 0.12),
        ("joint_limits", {}, 0.0),
        ("joint_limits", {"joint_position": np.array([-1.5, 2.25] + [0.5] * 10)}, 0.75),
        ("termination", {"terminated": True}, 1.0),
    ],
)
def test_reward_term_on_a_hand_built_state(term, changes, expected):
    assert rewards.REWARD_TERMS[term](make_inputs(**changes)) == pytest.approx(expected)


def test_total_reward_scales_by_dt_clips_at_zero_and_adds_termination():
    inputs = make_inputs(terminated=True, joint_torque=np.full(12, 10.0))
    total, terms = rewards.total_reward(inputs, {"tracking_linear_velocity": 1.0, "torques": -1.0, "termination": -2.0}, 0.02, True)
    assert terms["tracking_linear_velocity"] == pytest.approx(0.02)
    assert terms["torques"] == pytest.approx(-24.0)
    assert total == pytest.approx(-2.0)  # the shaped part clipped at 0, then the termination penalty


@pytest.mark.parametrize("engine", ["pybullet", "mujoco"])
def test_randomization_stays_inside_its_ranges(engine):
    config = load_config(overrides={"env": {"engine": engine}})
    r = config.randomization
    e = PupperEnv(config, randomize=True)
    nominal = e.sim.link_masses()
    for seed in range(30):
        e.reset(seed=seed)
        assert r.friction[0] <= e.friction <= r.friction[1]
        assert e.sim.ground_friction() == pytest.approx(e.friction)
        scale = e.sim.link_masses() / nominal
        assert r.base_mass_scale[0] - 1e-9 <= scale[0] <= r.base_mass_scale[1] + 1e-9
        assert np.all((r.link_mass_scale[0] - 1e-9 <= scale[1:]) & (scale[1:] <= r.link_mass_scale[1] + 1e-9))
        kp_scale, kd_scale = e.sim.kp / e.profile.kp, e.sim.kd / e.profile.kd
        assert np.all((r.kp_scale[0] <= kp_scale) & (kp_scale <= r.kp_scale[1]))
        assert np.all((r.kd_scale[0] <= kd_scale) & (kd_scale <= r.kd_scale[1]))
        assert np.all((r.motor_strength[0] <= e.sim.motor_strength) & (e.sim.motor_strength <= r.motor_strength[1]))
        assert r.com_shift_x[0] <= e.sim.base_com_shift[0] <= r.com_shift_x[1]
        assert np.all(np.abs(e.sim.base_com_shift[1:]) <= r.com_shift_yz[1])
        assert 0 <= e.latency_substeps * e.physics_dt <= r.latency_seconds[1] + 1e-9
        low, high = e.profile.command_low, e.profile.command_high
        assert np.all((low <= e.command) & (e.command <= high))
    e.close()


# Pupper v2's model leaves its own mirror image within about 0.1 s of random actions (0.02 rad after 3 policy steps,
# 0.56 after 10, where Pupper v3's stays within 0.002 after 25): its URDF is not quite symmetric (the abduction links'
# centres of mass differ by 0.8 mm in x) and its light legs make the contacts chaotic. So it is checked over 3 steps,
# where a wrong sign would still show as a difference of a tenth of a radian.
@pytest.mark.parametrize("robot, settle, steps, tolerance", [("pupper_v3", 0, 25, 2e-3), ("pupper_v2", 25, 3, 3e-2)])
def test_mirrored_action_gives_the_mirrored_observation(robot, settle, steps, tolerance):
    """The symmetry maps against physics: mirror the action, and the robot's state comes out mirrored (Pupper v3's
    joints all flip sign in the mirror; Pupper v2's hips and knees do not)."""
    config = load_config(overrides={"robot": robot, "env": {"initial_joint_noise": 0.0}})
    (obs_perm, obs_sign), (act_perm, act_sign), _ = mirror_maps(CURRENT_CONTRACT, PupperEnv(config, randomize=False).profile)
    rng = np.random.default_rng(0)
    # Pupper v2 stands on its default pose first, so the 3 steps test the mirror rather than its drop onto its feet.
    actions = np.vstack([np.zeros((settle, 12)), rng.uniform(-0.5, 0.5, (steps, 12))])
    finals = []
    for mirrored in (False, True):
        e = PupperEnv(config, randomize=False)
        e.reset(seed=0, options={"command": [0.0, 0.0, 0.0]})
        e.sim.reset()  # yaw 0, so the world mirror plane is the body's
        for a in actions:
            obs, *_ = e.step(a[act_perm] * act_sign if mirrored else a)
        finals.append(obs)
        e.close()
    skip = slice(6, 11)  # command (zero both ways) and gait clock (the clock does not run mirrored in physics)
    expected = finals[0][obs_perm] * obs_sign
    keep = np.ones(len(expected), dtype=bool)
    keep[skip] = False
    np.testing.assert_allclose(finals[1][keep], expected[keep], atol=tolerance)


def test_pupper_v2_stands_on_zero_actions_in_the_training_environment():
    """The environment steps each robot at its profile's physics step (Pupper v2's light legs need 0.5 ms; at 5 ms
    its explicit PD is unstable and the robot collapsed on zero actions; at 2 ms it stood but a swing leg chattered)."""
    e = PupperEnv(load_config(overrides={"robot": "pupper_v2", "env": {"initial_joint_noise": 0.0}}), randomize=False)
    assert e.physics_dt == e.profile.physics_dt == 0.0005
    e.reset(seed=0, options={"command": [0.0, 0.0, 0.0]})
    for _ in range(100):
        _, _, terminated, _, _ = e.step(np.zeros(12))
        assert not terminated
    assert e.sim.base_pose()[0][2] > 0.9 * e.profile.standing_height
    e.close()


def test_config_rejects_unknown_keys_and_bad_values(tmp_path):
    with pytest.raises(ConfigError, match="unknown config key 'ppo.learning_rat'"):
        load_config(overrides={"ppo": {"learning_rat": 1e-3}})
    with pytest.raises(ConfigError, match=r"randomization.friction must satisfy"):
        load_config(overrides={"randomization": {"friction": [1.4, 0.6]}})
    with pytest.raises(ConfigError, match="rewards.weights: unknown term"):
        load_config(overrides={"rewards": {"weights": {"happiness": 1.0}}})
    with pytest.raises(ConfigError, match="envs must be >= 1"):
        load_config(overrides={"envs": 0})
    with pytest.raises(ConfigError, match=r"rewards.soft_joint_limit must be in \(0, 1\]"):
        load_config(overrides={"rewards": {"soft_joint_limit": 1.5}})
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "absent.yaml")
    with pytest.raises(ConfigError, match="env.engine must be one of pybullet, mujoco, got 'warp'"):
        load_config(overrides={"env": {"engine": "warp"}})
    with pytest.raises(ConfigError, match="env.implicit_pd needs env.engine mujoco"):
        load_config(overrides={"env": {"implicit_pd": True}})  # the default engine is PyBullet


def test_a_recipe_extends_another_and_overrides_it(tmp_path):
    """`extends: FILE` loads that recipe first (relative to the extending file); the extending file's keys win. A
    missing base and recipes that extend each other in a circle are refused naming the files."""
    from training.config import RECIPES

    batch = load_config(RECIPES / "pupper_v3_walk_mujoco_batch.yaml")
    reference = load_config(RECIPES / "pupper_v3_walk_mujoco_batch_reference.yaml")
    assert reference.randomization != batch.randomization and reference.randomization.start
    reference.randomization = batch.randomization
    assert reference.to_dict() == batch.to_dict()  # everything else is the batched recipe's

    (tmp_path / "a.yaml").write_text("extends: b.yaml\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\n")
    with pytest.raises(ConfigError, match=r"extend each other in a circle: .*a\.yaml -> .*b\.yaml -> .*a\.yaml"):
        load_config(tmp_path / "a.yaml")
    (tmp_path / "c.yaml").write_text("extends: gone.yaml\n")
    with pytest.raises(ConfigError, match=r"config file not found: .*gone\.yaml \(extended by .*c\.yaml\)"):
        load_config(tmp_path / "c.yaml")


def test_a_recipe_names_a_set_of_ranges_and_a_curriculum_its_start(tmp_path):
    """`randomization.ranges: NAME` sets every range and push setting to that preset (the reference's where the preset
    says nothing) before the section's own keys; `start: NAME` starts a curriculum from the preset. The training
    default is the narrowed set; the reference curriculum recipe goes from it to the reference ranges."""
    from training.config import RANGE_PRESETS, RECIPES, RandomizationConfig

    reference, narrowed = RandomizationConfig(), RANGE_PRESETS["narrowed"]
    default = load_config().randomization
    assert all(getattr(default, k) == v for k, v in narrowed.items()) and default.link_mass_scale == reference.link_mass_scale
    assert default.kp_scale != reference.kp_scale  # narrowed differs from the reference where it says so

    (tmp_path / "r.yaml").write_text("randomization:\n  kp_scale: [0.7, 1.0]\n  ranges: reference\n")
    mine = load_config(tmp_path / "r.yaml").randomization
    assert mine.kp_scale == (0.7, 1.0)  # the section's own key over the preset, whatever the order
    assert all(getattr(mine, k) == getattr(reference, k) for k in narrowed if k != "kp_scale")

    curriculum = load_config(RECIPES / "pupper_v3_walk_mujoco_batch_reference.yaml").randomization
    assert curriculum.start == {k: list(v) if isinstance(v, tuple) else v for k, v in narrowed.items()}
    assert all(getattr(curriculum, k) == getattr(reference, k) for k in narrowed)

    for text, message in (("ranges: widest", "randomization.ranges: unknown set of ranges 'widest'; known: reference, narrowed, strength_narrowed"),
                          ("start: reference", "randomization.start: 'reference' are the reference ranges themselves")):
        (tmp_path / "bad.yaml").write_text(f"randomization:\n  {text}\n")
        with pytest.raises(ConfigError, match=message):
            load_config(tmp_path / "bad.yaml")


def test_pupper_eval_refuses_the_implicit_pd_outside_mujoco(capsys):
    from pupper_ros import resources
    from training.evaluate import main as eval_main

    assert eval_main([str(resources.default_policy_path("pupper_v3")), "--implicit-pd"]) == 2
    assert "--implicit-pd is MuJoCo's PD; add --engine mujoco" in capsys.readouterr().err


def test_swing_height_counts_only_feet_the_clock_has_in_swing():
    inputs = make_inputs(foot_height=np.array([0.0, 0.02, 0.08, 0.0]), swing_height_target=0.04,
                         desired_stance=np.array([True, False, False, True]))
    assert rewards.swing_height(inputs) == pytest.approx((0.02 + 0.04) / (0.04 * 4))
    standing = make_inputs(foot_height=np.full(4, 0.05), swing_height_target=0.04, desired_stance=np.ones(4, dtype=bool))
    assert rewards.swing_height(standing) == 0.0


def test_actions_reach_the_motors_through_the_runtimes_target_envelope(env, profile):
    """The runtime's supervisor rate-limits targets at the robot's default joint speed limit and keeps a margin from
    the joint limits; the environment applies the same envelope, so a policy never learns on jumps it cannot send."""
    env.reset(seed=3)
    max_step = joint_speed_limit(profile, env.dt) * env.dt
    limit = CURRENT_CONTRACT.action_clip
    for sign in (1.0, -1.0, 1.0):
        before = env.previous_targets.copy()
        env.step(np.full(12, sign * limit, dtype=np.float32))
        moved = np.abs(env.previous_targets - before)
        assert np.all(moved <= max_step + 1e-9) and np.max(moved) > 0.99 * max_step
        assert np.all(env.previous_targets >= profile.lower_limits + SafetyLimits.joint_limit_margin - 1e-9)
        assert np.all(env.previous_targets <= profile.upper_limits - SafetyLimits.joint_limit_margin + 1e-9)


def test_the_one_robot_environment_applies_the_shared_dynamics_draw():
    """training/randomization.py draws dynamics for both environments: the one-robot environment's robot after a
    seeded reset is the first row of a draw from the same generator (its first draws of the episode)."""
    from gymnasium.utils import seeding

    from training.randomization import draw_dynamics

    env = PupperEnv(load_config(), randomize=True)
    try:
        env.reset(seed=7)
        rng, _ = seeding.np_random(7)
        draw = draw_dynamics(env.config.randomization, env.profile, env.physics_dt, rng, 1)
        assert env.friction == draw.friction[0]
        np.testing.assert_array_equal(env.sim.kp, np.full(12, draw.kp[0, 0]))
        np.testing.assert_array_equal(env.sim.motor_strength, draw.motor_strength[0])
        np.testing.assert_array_equal(env.sim.base_com_shift, draw.base_com_shift[0])
        assert env.latency_substeps == draw.latency_substeps[0]
    finally:
        env.close()


def test_a_fixed_action_latency_is_applied_in_the_one_robot_environment():
    """Found 2026-12-06: reset drew the latency and then zeroed it with the episode state, so neither training nor
    `pupper-eval --latency 0.02` in this environment ever delayed an action. 20 ms is 4 PyBullet steps of 5 ms."""
    config = load_config(overrides={"randomization": {"latency_seconds": [0.02, 0.02]}})
    env = PupperEnv(config, randomize=True)
    try:
        env.reset(seed=3)
        assert env.latency_substeps == 4
    finally:
        env.close()
