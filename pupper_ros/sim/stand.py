"""``pupper-sim-stand``: stand the simulated Pupper on its PD gains and report how it holds, in either engine."""

from __future__ import annotations

import argparse
import math

import numpy as np

from pupper_ros.robot_profile import load_robot_profile
from pupper_ros.sim import DEFAULT_ENGINE, ENGINES, make_simulation
from pupper_ros.sim.simulation import tilt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pupper-sim-stand", description=__doc__)
    parser.add_argument("--engine", choices=list(ENGINES), default=DEFAULT_ENGINE)
    parser.add_argument("--robot", default="pupper_v3")
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args(argv)
    profile = load_robot_profile(args.robot)
    sim = make_simulation(profile, args.engine)
    sim.reset()
    start = sim.state().base_position.copy()
    steps = int(round(args.seconds / sim.physics_dt))
    print(f"{profile.name} in {args.engine}: {profile.num_joints} joints, {sim.total_mass():.3f} kg, "
          f"standing on kp {profile.kp} kd {profile.kd}, physics step {sim.physics_dt * 1000:.1f} ms")
    for k in range(1, steps + 1):
        sim.step()
        if k % int(round(1.0 / sim.physics_dt)) == 0:
            s = sim.state()
            drift = np.linalg.norm(s.base_position[:2] - start[:2])
            print(f"  t={k * sim.physics_dt:4.1f} s  height {s.base_position[2]:.4f} m  drift {drift * 1000:5.1f} mm  "
                  f"tilt {math.degrees(tilt(s.base_orientation)):4.1f} deg")
    sim.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
