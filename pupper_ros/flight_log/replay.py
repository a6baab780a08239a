"""``pupper-replay``: a flight log against the policy and the simulator, to tell policy, sensors and physics apart.

--policy [POLICY.onnx]     the policy (the logged one, found by digest, or another file) on the logged observations:
                           the largest action difference per joint, and where it first exceeds 1e-6
--open-loop --engine E     the simulated robot from the logged initial joints and attitude, driven by the logged
                           targets and gains tick by tick (no policy): RMS of joint positions and body rates against
                           the log, i.e. the actuator and physics mismatch
--closed-loop --engine E   the simulated robot driven by the logged velocity commands through the same Controller,
                           policy and supervisor: RMS as above, and commanded against achieved velocity

Each mode prints a table; ``-o DIR`` also writes PNG plots (needs matplotlib).
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pupper_ros import resources
from pupper_ros.flight_log import plots as replay_plots
from pupper_ros.flight_log.reader import FlightLog, FlightLogError, read_flight_log
from pupper_ros.flight_log.recorder import file_digest

EXACT_TOLERANCE = 1e-6  # what the same policy may differ by on another onnxruntime build
SETTLE_SECONDS = 1.0  # open loop: the robot is placed at the logged pose and held by the first command this long
VELOCITY_SETTLE_SECONDS = 1.0  # closed loop: the start of each command is acceleration, not tracking
BODY_AXES = ("roll", "pitch", "yaw")


class ReplayError(ValueError):
    """The log cannot be replayed this way: a missing policy, another robot, or an incompatible contract."""


# --- what the log was recorded with ------------------------------------------------------------------------------
def logged_profile(log: FlightLog):
    from pupper_ros.robot_profile import ProfileError, load_robot_profile

    for name in dict.fromkeys((log.parameters.get("robot") or log.header["robot"], log.header["robot"])):
        try:
            profile = load_robot_profile(name)
        except ProfileError:
            continue
        if list(profile.joints) != log.joints:
            raise ReplayError(f"robot profile {name} here has joints {list(profile.joints)}, the log {log.joints}")
        return profile
    raise ReplayError(f"the log's robot '{log.header['robot']}' has no profile here")


def logged_policy_path(log: FlightLog) -> Path:
    """The logged policy's file: where the log says it was if the digest still matches, else a shipped policy with
    that digest."""
    logged = log.header["policy"]
    digest, path = logged["sha256"], Path(logged["path"])
    candidates = [path] + sorted(resources.models_dir().glob("*.onnx"))
    for candidate in candidates:
        if candidate.is_file() and file_digest(candidate) == digest:
            return candidate
    raise ReplayError(f"the logged policy ({path}, sha256 {digest[:12]}...) is not on this machine: "
                      "pass the file with --policy POLICY.onnx")


def load_replay_policy(log: FlightLog, profile, path: Path | None):
    from pupper_ros.policy import PolicyLoadError, load_policy

    path = logged_policy_path(log) if path is None else path
    try:
        return load_policy(path, profile)
    except PolicyLoadError as exc:
        raise ReplayError(str(exc)) from exc


def control_period(log: FlightLog, policy_rate_hz: float) -> float:
    from pupper_ros.assembly import loop_timing

    return loop_timing(policy_rate_hz, log.parameters.get("control_rate", 0.0)).period


# --- --policy ------------------------------------------------------------------------------------------------------
@dataclass
class PolicyReplay:
    policy: Path
    same_policy: bool  # the file's digest is the logged one
    max_difference: np.ndarray  # per joint
    first_divergence: float | None  # s after the first policy step where a difference first exceeds EXACT_TOLERANCE
    replayed: np.ndarray
    steps: int

    @property
    def verdict(self) -> str:
        worst = float(self.max_difference.max()) if self.steps else 0.0
        if worst == 0.0:
            return "reproduces the logged actions exactly"
        if worst <= EXACT_TOLERANCE:
            return f"reproduces the logged actions within {EXACT_TOLERANCE:g} (largest {worst:.2e})"
        return f"diverges from the logged actions {self.first_divergence:.3f} s after the first policy step (largest {worst:.3g})"


def replay_policy(log: FlightLog, policy) -> PolicyReplay:
    if not len(log.observation):
        raise ReplayError(f"{log.path} holds no policy step (the policy never ran)")
    size = policy.contract.observation_size
    if log.observation.shape[1] != size:
        raise ReplayError(f"policy {policy.info.path} takes {size} observation values, the log holds "
                          f"{log.observation.shape[1]} per step (contract {log.header['policy']['contract'].get('name')})")
    replayed = np.array([policy(o).copy() for o in log.observation], dtype=np.float32)
    difference = np.abs(replayed - log.action)
    over = np.flatnonzero(difference.max(axis=1) > EXACT_TOLERANCE)
    first = float(log.policy_time[over[0]] - log.policy_time[0]) if len(over) else None
    return PolicyReplay(Path(policy.info.path), file_digest(policy.info.path) == log.header["policy"]["sha256"],
                        difference.max(axis=0), first, replayed, len(replayed))


def policy_table(log: FlightLog, result: PolicyReplay) -> str:
    which = "the logged policy" if result.same_policy else "another policy"
    lines = [f"policy {result.policy} ({which}) on {result.steps} logged observations: {result.verdict}",
             f"{'joint':24s} {'max |action difference|':>24s}"]
    lines += [f"{name:24s} {value:24.3e}" for name, value in zip(log.joints, result.max_difference)]
    return "\n".join(lines)


# --- --open-loop and --closed-loop -----------------------------------------------------------------------------------
@dataclass
class SimReplay:
    mode: str
    engine: str
    time: np.ndarray  # s after the first tick, of each compared sample
    joint_position: np.ndarray  # simulated, ticks x joints
    logged_joint_position: np.ndarray
    body_rate: np.ndarray  # simulated gyro, ticks x 3
    logged_body_rate: np.ndarray
    velocity: list = field(default_factory=list)  # closed loop: (start, end, commanded, achieved) per command
    achieved: np.ndarray | None = None  # closed loop: body-frame vx, vy, yaw rate of the simulated robot per tick

    @property
    def joint_rms(self) -> np.ndarray:
        return np.sqrt(np.mean((self.joint_position - self.logged_joint_position) ** 2, axis=0))

    @property
    def body_rate_rms(self) -> np.ndarray:
        return np.sqrt(np.mean((self.body_rate - self.logged_body_rate) ** 2, axis=0))


def _simulation(profile, engine: str, period: float):
    """The simulation the sim backend runs at this control period."""
    from pupper_ros.sim import control_substeps, make_simulation

    return make_simulation(profile, engine, physics_dt=period / control_substeps(profile, engine, period))


def _place_at_logged_start(sim, log: FlightLog) -> None:
    """Logged joints and attitude, the lowest foot on the ground, then held by the first command for SETTLE_SECONDS."""
    profile = sim.profile
    sim.reset(joint_position=log.joint_position[0], base_height=profile.standing_height)
    position, _ = sim.base_pose()
    sim.set_base_pose(position, log.orientation[0])
    lowest = float(np.min(sim.foot_positions()[:, 2])) - sim.foot_radius
    if lowest < 0.0:  # a foot in the ground: lift the body until it is not
        sim.set_base_pose(position + np.array([0.0, 0.0, -lowest]), log.orientation[0])
    sim.set_targets(log.target[0], kp=log.kp[0], kd=log.kd[0])
    sim.step(int(round(SETTLE_SECONDS / sim.physics_dt)))


def replay_open_loop(log: FlightLog, engine: str) -> SimReplay:
    profile = logged_profile(log)
    period = control_period(log, log.header["policy"]["contract"]["control_rate_hz"])
    sim = _simulation(profile, engine, period)
    try:
        _place_at_logged_start(sim, log)
        n = log.ticks - 1
        q, rates = np.zeros((n, profile.num_joints)), np.zeros((n, 3))
        # On a robot a late tick (an overrun) held its command longer, and so does the replay; the simulated
        # backend advanced one control period per tick whatever the clock said.
        held = (np.full(n, period) if log.header["backend"] == "sim" else np.diff(log.tick_time))
        for k in range(n):
            sim.set_targets(log.target[k], kp=log.kp[k], kd=log.kd[k])
            sim.step(max(1, round(held[k] / sim.physics_dt)))
            state = sim.state()
            q[k], rates[k] = state.joint_position, state.base_angular_velocity
    finally:
        sim.close()
    return SimReplay("open loop", engine, log.tick_time[1:] - log.tick_time[0], q, log.joint_position[1:], rates,
                     log.angular_velocity[1:])


def command_segments(log: FlightLog, command_timeout: float) -> list[tuple[float, float, np.ndarray]]:
    """(start, end, command) for each run of equal /cmd_vel messages; a run ends at the next different command or
    ``command_timeout`` after its last message (the supervisor then ramps to zero)."""
    segments = []
    t, values = log.cmd_vel_time, log.cmd_vel
    end_of_log = float(log.tick_time[-1])
    i = 0
    while i < len(t):
        j = i
        while j + 1 < len(t) and np.array_equal(values[j + 1], values[i]) and t[j + 1] - t[j] <= command_timeout:
            j += 1
        end = min(float(t[j + 1]) if j + 1 < len(t) else end_of_log, float(t[j]) + command_timeout)
        segments.append((float(t[i]), end, values[i].copy()))
        i = j + 1
    return segments


def replay_closed_loop(log: FlightLog, engine: str, policy_path: Path | None = None) -> SimReplay:
    from pupper_ros.assembly import assemble, parameter_values
    from pupper_ros.parameters import BY_NAME, ParameterError
    from pupper_ros.rotations import rotation_matrix

    profile = logged_profile(log)
    policy = load_replay_policy(log, profile, policy_path)
    logged = {name: value for name, value in log.parameters.items() if name in BY_NAME}  # an older log may lack some
    values = parameter_values(**logged) | {"backend": "sim", "sim_engine": engine, "sim_realtime": False,
                                           "sim_gui": False, "record_log": "", "policies": ""}
    try:
        runtime = assemble(profile, policy, values)
    except (KeyError, ParameterError) as exc:
        raise ReplayError(f"the log's parameters do not make a runtime: {exc}") from exc
    backend, controller = runtime.backend, runtime.controller
    n = log.ticks
    q, rates, achieved = np.zeros((n, profile.num_joints)), np.zeros((n, 3)), np.zeros((n, 3))
    commands = iter(zip(log.cmd_vel_time, log.cmd_vel))
    pending = next(commands, None)
    try:
        controller.activate(float(log.tick_time[0]))
        for k, now in enumerate(log.tick_time):
            while pending is not None and pending[0] <= now:
                controller.set_command(pending[1], float(pending[0]))
                pending = next(commands, None)
            sample = backend.latest_sample(now)
            q[k], rates[k] = sample.joint_position, sample.angular_velocity
            _, orientation, linear, angular = backend.ground_truth()
            body = rotation_matrix(orientation).T
            achieved[k, :2], achieved[k, 2] = (body @ linear)[:2], (body @ angular)[2]
            controller.tick(float(now))
    finally:
        backend.close()
    time = log.tick_time - log.tick_time[0]
    velocity = []
    for start, end, command in command_segments(log, runtime.supervisor.limits.command_timeout):
        window = (log.tick_time >= start + VELOCITY_SETTLE_SECONDS) & (log.tick_time < end)
        if window.any():
            velocity.append((start - log.tick_time[0], end - log.tick_time[0], command, achieved[window].mean(axis=0)))
    return SimReplay("closed loop", engine, time, q, log.joint_position, rates, log.angular_velocity, velocity, achieved)


def sim_table(log: FlightLog, result: SimReplay) -> str:
    lines = [f"{result.mode} in {result.engine}: {len(result.time)} ticks ({result.time[-1]:.1f} s) against the log",
             f"{'joint':24s} {'RMS position difference rad':>28s}"]
    lines += [f"{name:24s} {value:28.4f}" for name, value in zip(log.joints, result.joint_rms)]
    lines.append(f"{'all joints':24s} {math.sqrt(float(np.mean(result.joint_rms ** 2))):28.4f}")
    lines.append(f"{'body rate':24s} {'RMS difference rad/s':>28s}")
    lines += [f"{axis:24s} {value:28.4f}" for axis, value in zip(BODY_AXES, result.body_rate_rms)]
    if result.velocity:
        lines.append(f"{'command from s':>14s} {'to s':>7s}   {'commanded vx vy yaw':>22s}   {'achieved vx vy yaw':>22s}   "
                     f"{'linear error':>12s} {'yaw error':>9s}")
        for start, end, commanded, achieved in result.velocity:
            linear = float(np.hypot(*(achieved[:2] - commanded[:2])))
            lines.append(f"{start:14.2f} {end:7.2f}   {commanded[0]:6.2f} {commanded[1]:6.2f} {commanded[2]:6.2f}     "
                         f"{achieved[0]:6.2f} {achieved[1]:6.2f} {achieved[2]:6.2f}     {linear:12.3f} "
                         f"{abs(achieved[2] - commanded[2]):9.3f}")
    return "\n".join(lines)


# --- command line -----------------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pupper-replay", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    parser.add_argument("log", type=Path, metavar="FILE.mcap", help="a flight log (pupper-walk --record-log)")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--policy", nargs="?", const="", metavar="POLICY.onnx",
                      help="replay the policy on the logged observations (default: the logged policy)")
    mode.add_argument("--open-loop", action="store_true", help="apply the logged targets and gains to the simulator")
    mode.add_argument("--closed-loop", action="store_true",
                      help="drive the simulator with the logged velocity commands through controller, policy and supervisor")
    parser.add_argument("--engine", choices=("pybullet", "mujoco"), default="pybullet", help="physics engine (default pybullet)")
    parser.add_argument("--closed-loop-policy", type=Path, metavar="POLICY.onnx",
                        help="with --closed-loop: another policy than the logged one")
    parser.add_argument("-o", "--out", type=Path, metavar="DIR", help="write PNG plots here")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.out is not None:
            replay_plots.pyplot()  # fail before a long replay, not after it
        log = read_flight_log(args.log)
        if not log.complete:
            print(f"pupper-replay: warning: {log.end}", file=sys.stderr)
        print(f"{log.path}: robot {log.header['robot']}, backend {log.header['backend']}, {log.ticks} ticks over "
              f"{log.duration():.1f} s, {len(log.policy_time)} policy steps, {len(log.cmd_vel_time)} velocity commands")
        if args.policy is not None:
            profile = logged_profile(log)
            policy = load_replay_policy(log, profile, Path(args.policy) if args.policy else None)
            result = replay_policy(log, policy)
            print(policy_table(log, result))
            plots = replay_plots.policy_plots(log, result, args.out) if args.out else []
            code = 1 if result.same_policy and result.max_difference.max() > EXACT_TOLERANCE else 0
        else:
            from pupper_ros.sim import EngineError, check_engine

            try:
                check_engine(args.engine)
            except EngineError as exc:
                raise ReplayError(str(exc)) from exc
            if args.open_loop:
                result = replay_open_loop(log, args.engine)
            else:
                result = replay_closed_loop(log, args.engine, args.closed_loop_policy)
            print(sim_table(log, result))
            plots = replay_plots.sim_plots(log, result, args.out) if args.out else []
            code = 0
    except (FlightLogError, ReplayError) as exc:
        print(f"pupper-replay: {exc}", file=sys.stderr)
        return 2
    except ImportError as exc:
        print(f"pupper-replay: {exc.name or exc} is not installed: replay needs the 'replay' extra "
              "(pip install 'pupper_ros[replay]')", file=sys.stderr)
        return 2
    for plot in plots:
        print(f"wrote {plot}")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
