"""``pupper-walk``: the walking daemon. Standalone it configures and activates itself; under launch it waits."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from pupper_ros.parameters import BY_NAME, PARAMETERS

# Each stops the daemon the same way: damping on the wire, the link closed, exit 0. SIGHUP is an SSH session that
# dropped; without a handler it would end the process with the last walking command left on the motors.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def build_parser() -> argparse.ArgumentParser:
    epilog = "ROS parameters (set with --ros-args -p NAME:=VALUE or a --params-file such as config/walk.yaml):\n" + "\n".join(
        f"  {p.name:26s} {p.description} (default {p.default!r})" for p in PARAMETERS
    )
    parser = argparse.ArgumentParser(prog="pupper-walk", description="Walk a Pupper with an ONNX policy behind a safety supervisor.",
                                     epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=BY_NAME["backend"].choices, help="robot link (parameter backend)")
    parser.add_argument("--robot", help="robot profile name or YAML path (parameter robot)")
    parser.add_argument("--policy", help="ONNX policy file (parameter policy; default: the shipped policy)")
    parser.add_argument("--policies", metavar="NAME=FILE,...", help="more policies to switch to with ~/select_policy "
                        "(parameter policies)")
    parser.add_argument("--port", help="serial device, e.g. /dev/ttyACM0 (parameter serial_port)")
    parser.add_argument("--control-rate", type=float, help="control loop Hz (parameter control_rate)")
    parser.add_argument("--engine", choices=BY_NAME["sim_engine"].choices, help="with the sim backend: physics engine (parameter sim_engine)")
    parser.add_argument("--gui", action="store_true", default=None, help="open a PyBullet window (parameter sim_gui)")
    parser.add_argument("--lockstep", action="store_true", default=None, help="simulate as fast as possible instead of in real time")
    parser.add_argument("--no-autostart", action="store_true", help="wait for lifecycle transitions (as under launch)")
    parser.add_argument("--demo", action="store_true", help="walk a built-in /cmd_vel script, print a summary, exit")
    parser.add_argument("--demo-odom", default="/odom", metavar="TOPIC",
                        help="with --demo: the nav_msgs/Odometry topic to measure the walk on (default /odom, which the "
                             "sim backend publishes; with none, the demo plays unmeasured)")
    parser.add_argument("--record-log", metavar="FILE.mcap", help="flight recorder: write every control tick to an MCAP file (parameter record_log)")
    parser.add_argument("--record", type=Path, metavar="FILE", help="with the sim backend: write an animated GIF of the run")
    return parser


def _overrides(args):
    from rclpy.parameter import Parameter

    pairs = {"backend": args.backend, "robot": args.robot, "policy": args.policy, "policies": args.policies,
             "serial_port": args.port,
             "control_rate": args.control_rate, "sim_gui": args.gui, "sim_engine": args.engine,
             "record_log": args.record_log,
             "sim_realtime": (False if args.lockstep else None)}
    return [Parameter(name, value=value) for name, value in pairs.items() if value is not None]


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv if argv is None else argv)
    from rclpy.utilities import remove_ros_args

    args = build_parser().parse_args(remove_ros_args(argv)[1:])

    import rclpy
    from rclpy.exceptions import ParameterException
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.lifecycle import TransitionCallbackReturn
    from rclpy.signals import SignalHandlerOptions

    from pupper_ros.ros.node import WalkNode

    stop = threading.Event()
    rclpy.init(args=argv, signal_handler_options=SignalHandlerOptions.NO)
    for sig in STOP_SIGNALS:
        signal.signal(sig, lambda *_: stop.set())
    try:
        node = WalkNode(parameter_overrides=_overrides(args), stop_requested=stop)
    except ParameterException as exc:  # a value outside a declared range or of the wrong type
        print(f"pupper-walk: invalid parameter: {exc}", file=sys.stderr)
        rclpy.shutdown()
        return 1
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    demo = recorder = None
    code = 0
    try:
        if not args.no_autostart:
            if node.trigger_configure() != TransitionCallbackReturn.SUCCESS:
                print(f"pupper-walk: {node.configure_error or 'configure failed'}", file=sys.stderr)
                return 1
            if args.record is not None:
                from pupper_ros.sim.video import PoseRecorder

                recorder = PoseRecorder(every=max(1, round(0.1 / node.loop.period)))
                capture = node.loop.on_tick

                def on_tick(now, controller):
                    capture(now, controller)
                    recorder.capture(controller.backend.ground_truth(), controller.sample.joint_position)

                node.loop.on_tick = on_tick
            if stop.is_set():
                print("pupper-walk: stopped by a signal during configure; nothing was activated", file=sys.stderr)
            else:
                node.trigger_activate()
        if args.demo:
            from pupper_ros.command_suite import demo_script
            from pupper_ros.ros.demo import DemoDriver
            from pupper_ros.robot_profile import load_robot_profile

            profile = getattr(node, "profile", None) or load_robot_profile(node.get_parameter("robot").value)
            demo = DemoDriver(demo_script(profile), odom_topic=args.demo_odom)
            executor.add_node(demo)
        while not stop.is_set() and rclpy.ok() and not (demo is not None and demo.done):
            executor.spin_once(timeout_sec=0.05)
        summary = node.loop.stats.summary() if node.loop is not None else None
        period = node.loop.period if node.loop is not None else 0.0
        fault = node.controller.supervisor.fault_reason if node.controller is not None else ""
        profile = getattr(node, "profile", None)
        node.shutdown_safely()
        if demo is not None:
            print(demo.table())
            if summary:
                print(f"loop: {summary['ticks']} ticks, period mean {summary['period_mean_ms']:.2f} ms, p99 "
                      f"{summary['period_p99_ms']:.2f} ms, tick p99 {summary['tick_p99_ms']:.3f} ms, "
                      f"inference p99 {summary['inference_p99_ms']:.3f} ms, overruns {summary['overruns']}")
            print(f"faults: {demo.failed or fault or 'none'}; states: {' -> '.join(dict.fromkeys(demo.states_seen))}")
            if demo.failed:
                code = 1
        if recorder is not None and profile is not None:
            from pupper_ros.sim.video import render_gif

            render_gif(profile, recorder.frames, args.record, frame_seconds=recorder.every * period)
            print(f"wrote {args.record}")
    finally:
        node.shutdown_safely()
        if demo is not None:
            demo.destroy_node()
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return code


if __name__ == "__main__":
    raise SystemExit(main())
