"""Open-loop checks of a simulated Pupper, no policy in the loop: what each engine says the robot does.

Standing height on the PD gains, settling after a drop, a joint's step response with the body held in the air, and
each joint's effective inertia. tests/test_sim_engines.py holds the engines to each other with these;
``python -m pupper_ros.sim.open_loop [--robot R]`` prints them side by side, MuJoCo's implicit PD at 4 ms included.
"""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np

from pupper_ros.robot_profile import RobotProfile, load_robot_profile
from pupper_ros.sim import ENGINES, default_physics_dt, make_simulation
from pupper_ros.sim.simulation import GRAVITY, Simulation

STEP_RAD = 0.3


def standing_height(sim: Simulation, profile: RobotProfile, seconds: float = 2.0) -> float:
    """base_link's height after standing this long at the default pose on the profile's gains."""
    sim.reset()
    sim.set_targets(profile.default_pose, kp=profile.kp, kd=profile.kd)
    sim.step(int(round(seconds / sim.physics_dt)))
    return float(sim.base_pose()[0][2])


def settled_height_after_a_drop(sim: Simulation, profile: RobotProfile, drop: float = 0.05, seconds: float = 2.0) -> float:
    sim.reset(base_height=profile.standing_height + drop)
    sim.set_targets(profile.default_pose, kp=profile.kp, kd=profile.kd)
    sim.step(int(round(seconds / sim.physics_dt)))
    return float(sim.base_pose()[0][2])


def step_response(sim: Simulation, profile: RobotProfile, joint: int, seconds: float = 0.6) -> tuple[np.ndarray, np.ndarray]:
    """A 0.3 rad step of one joint's target at the profile's gains, the body held still in the air without gravity.
    Returns time and the joint's travel as a share of the step."""
    sim.reset(base_height=0.5)
    sim.set_gravity([0.0, 0.0, 0.0])
    target = profile.default_pose.copy()
    target[joint] += STEP_RAD
    sim.set_targets(target, kp=profile.kp, kd=profile.kd)
    position, orientation = sim.base_pose()
    travel = []
    try:
        for _ in range(int(round(seconds / sim.physics_dt))):
            sim.step(1)
            sim.set_base_pose(position, orientation)
            sim.set_base_velocity([0.0, 0.0, 0.0], [0.0, 0.0, 0.0])
            travel.append((sim.joint_states()[0][joint] - profile.default_pose[joint]) / STEP_RAD)
    finally:
        sim.set_gravity([0.0, 0.0, -GRAVITY])
    return (np.arange(len(travel)) + 1) * sim.physics_dt, np.array(travel)


def crossing_time(t: np.ndarray, x: np.ndarray, level: float) -> float:
    """When x first reaches level, interpolated between physics steps (the engines step at 4 and 5 ms); NaN if never."""
    k = int(np.argmax(x >= level))
    if x[k] < level:
        return float("nan")
    if k == 0:
        return float(t[0])
    return float(t[k - 1] + (level - x[k - 1]) / (x[k] - x[k - 1]) * (t[k] - t[k - 1]))


def effective_inertia(sim: Simulation, profile: RobotProfile, joint: int, torque: float = 0.5) -> float:
    """What one joint's coordinate weighs: a torque on it from rest, the robot floating without gravity, over the
    acceleration of one physics step (kp 1 on a target 0.5 rad away, kd 0). Meaningful without friction and damping."""
    sim.reset(base_height=0.5)
    sim.set_gravity([0.0, 0.0, 0.0])
    target = profile.default_pose.copy()
    target[joint] += torque
    sim.set_targets(target, kp=1.0, kd=0.0)
    try:
        sim.step(1)
    finally:
        sim.set_gravity([0.0, 0.0, -GRAVITY])
    return torque / (sim.joint_states()[1][joint] / sim.physics_dt)


def lossless(profile: RobotProfile, armature: float | None = None) -> RobotProfile:
    """The profile without joint damping and friction (and with another armature, if given)."""
    actuator = dataclasses.replace(profile.actuator, damping=0.0, friction=0.0)
    if armature is not None:
        actuator = dataclasses.replace(actuator, armature=armature)
    return dataclasses.replace(profile, actuator=actuator)


def measure(profile: RobotProfile, engine: str, **options) -> dict[str, float]:
    sim = make_simulation(profile, engine, **options)
    figures = {"physics step ms": sim.physics_dt * 1000, "standing height mm": standing_height(sim, profile) * 1000,
               "height after a 5 cm drop mm": settled_height_after_a_drop(sim, profile) * 1000}
    for joint, name in ((0, "hip"), (2, "knee")):
        t, travel = step_response(sim, profile, joint)
        figures[f"{name} step: time to 50 % ms"] = crossing_time(t, travel, 0.5) * 1000
        figures[f"{name} step: time to 80 % ms"] = crossing_time(t, travel, 0.8) * 1000
        figures[f"{name} step: overshoot %"] = max(0.0, travel.max() - 1.0) * 100
        figures[f"{name} step: travel at 0.6 s %"] = travel[-1] * 100
    sim.close()
    free = lossless(profile)
    sim = make_simulation(free, engine, **(options | {"physics_dt": 0.001}))
    for joint, name in ((0, "hip"), (1, "abduction"), (2, "knee")):
        figures[f"{name} effective inertia 1e-4 kg m^2"] = effective_inertia(sim, free, joint) * 1e4
    sim.close()
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pupper_ros.sim.open_loop", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--robot", default="pupper_v3")
    args = parser.parse_args(argv)
    profile = load_robot_profile(args.robot)
    columns = {name: measure(profile, name) for name in ENGINES}
    columns["pybullet, armature on links"] = measure(profile, "pybullet", armature_model="link")
    step = default_physics_dt(profile, "mujoco", implicit_pd=True)
    columns[f"mujoco, implicit PD, {step * 1000:g} ms"] = measure(profile, "mujoco", implicit_pd=True)
    print(f"{profile.name}, open loop | " + " | ".join(columns))
    for key in next(iter(columns.values())):
        print(f"{key:38s} | " + " | ".join(f"{c[key]:8.2f}" for c in columns.values()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
