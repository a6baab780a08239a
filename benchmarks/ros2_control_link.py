"""The ros2_control link's timing, against the stand-in for Pupper v3's stack (tests/ros2_control_standin.py, in a
process of its own as controller_manager is on the robot), at 50 Hz and at 500 Hz control rates:

  sensor age at tick start: how old the sample a tick uses is (from the arrival of the older of its /joint_states
  and IMU messages), p50 / p99;
  tick start to the three command messages published (observation, policy, safety, three publishes), p50 / p99;
  a /joint_states message's arrival to the commands of the tick that used it, p50 / p99: the two above together
  (the wait for the tick, then the tick).

The daemon's pieces are the real ones (Ros2ControlBackend, Controller, SafetySupervisor, ControlLoop in real time);
the robot is the stand-in. Usage: python benchmarks/ros2_control_link.py [--seconds S]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("ROS_DOMAIN_ID", str(10 + os.getpid() % 90))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")


def measure(rate: float, seconds: float) -> dict[str, np.ndarray]:
    import rclpy

    from pupper_ros import resources
    from pupper_ros.assembly import assemble, parameter_values
    from pupper_ros.policy import load_policy
    from pupper_ros.robot_profile import load_robot_profile

    profile = load_robot_profile("pupper_v3")
    policy = load_policy(resources.default_policy_path(profile.name), profile)
    context = rclpy.Context()
    rclpy.init(context=context)
    runtime = assemble(profile, policy, parameter_values(backend="ros2_control", control_rate=rate, sensor_timeout=0.5),
                       context=context)
    backend, controller, loop = runtime.backend, runtime.controller, runtime.loop
    figures = {"age": [], "tick": [], "arrival_to_commands": []}
    tick = controller.tick

    def timed_tick(now):
        started = time.monotonic()
        command = tick(now)
        published = time.monotonic()
        if controller.sample is not None:
            figures["age"].append(started - controller.sample.stamp)
            figures["tick"].append(published - started)
            figures["arrival_to_commands"].append(published - controller.sample.stamp)
        return command

    controller.tick = timed_tick
    controller.activate(loop.now())
    loop.start()
    time.sleep(seconds)
    loop.stop()
    overruns = loop.stats.overruns
    backend.close()
    rclpy.shutdown(context=context)
    out = {k: np.array(v) * 1e3 for k, v in figures.items()}
    out["overruns"] = overruns
    return out


def main() -> int:
    from tests.ros2_control_standin import StandInProcess

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=30.0, help="measuring time per rate")
    args = parser.parse_args()
    for rate in (50.0, 500.0):
        with StandInProcess():
            f = measure(rate, args.seconds)
        line = ", ".join(f"{label} p50 {np.percentile(f[key], 50):.2f} ms p99 {np.percentile(f[key], 99):.2f} ms"
                         for key, label in (("age", "sensor age at tick start"), ("tick", "tick start to commands published"),
                                            ("arrival_to_commands", "arrival to commands")))
        print(f"{rate:5.0f} Hz, {len(f['tick'])} ticks over {args.seconds:.0f} s: {line}; overruns {f['overruns']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
