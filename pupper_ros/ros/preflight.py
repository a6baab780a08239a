"""``pupper-preflight``: check a real robot's stack before its first step, without moving it.

It opens the robot through the daemon's own backend code, read-only (ros2_control: no publisher at all; serial: the
motors idle, as the serial backend opens, and damping, kp 0, when it closes), records the sensors for a few seconds
with the robot resting, and reports one line per check with a verdict, what it found and what to do. With
``--guided`` the owner then lifts each foot and the robot's nose by hand when asked, and each joint's direction and
the IMU's frame are checked against the URDF's kinematics. Exit code: 0 when nothing failed, 1 when a check failed,
2 when the robot could not be reached.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from pupper_ros.backends import Backend, BackendError, backend_class
from pupper_ros.contract import CURRENT_CONTRACT, projected_gravity, tilt_from_gravity
from pupper_ros.parameters import BY_NAME
from pupper_ros.robot_profile import RobotProfile, load_robot_profile
from pupper_ros.safety import SafetyLimits

PASS, WARN, FAIL = "pass", "warn", "FAIL"
RANGE_TOLERANCE = 0.03  # rad a reading may sit past the URDF's limit (a joint pressed into its rubber stop)
FLAT_TOLERANCE = math.radians(5.0)  # gravity this far from the body's -z at rest: the IMU frame is turned
GYRO_AT_REST = 0.05  # rad/s; more while resting is a gyro bias or a robot that is not at rest
MOTOR_TURN_MATCH = 0.1  # rad: a rest-pose error this close to a whole motor turn is named as one
MOVED = 0.05  # rad a joint must move to count as moved by the owner's hand
FOOT_MOVE = 0.01  # m the measured foot must drop in the body frame when pulled away from the body
NOSE_UP_MIN = math.radians(8.0)  # the body tilt that counts as "nose lifted"
IMU_TURN_TOLERANCE = math.radians(15.0)  # guided nose-up: the gravity change may point this far off the model's


@dataclass
class Finding:
    check: str
    verdict: str  # PASS, WARN or FAIL
    detail: str
    fix: str = ""


@dataclass
class Recording:
    """What the sensors said while the robot rested: every poll's sample, in the profile's joint order."""

    joint_position: np.ndarray  # [samples, joints]
    orientation: np.ndarray  # [samples, 4] xyzw
    angular_velocity: np.ndarray  # [samples, 3]
    seconds: float

    @property
    def empty(self) -> bool:
        return len(self.joint_position) == 0

    def mean_position(self) -> np.ndarray:
        return self.joint_position.mean(axis=0)

    def gravity(self) -> np.ndarray:
        g = np.mean([projected_gravity(q) for q in self.orientation], axis=0)
        return g / np.linalg.norm(g)


def record(backend: Backend, seconds: float, joints: int, poll: float = 0.005) -> Recording:
    positions, orientations, rates = [], [], []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        sample = backend.latest_sample(time.monotonic())
        if sample is not None:
            positions.append(sample.joint_position.copy())
            orientations.append(sample.orientation.copy())
            rates.append(sample.angular_velocity.copy())
        time.sleep(poll)
    return Recording(np.array(positions).reshape(-1, joints), np.array(orientations).reshape(-1, 4),
                     np.array(rates).reshape(-1, 3), seconds)


# --- the URDF's kinematics ------------------------------------------------------------------------------------
class Kinematics:
    """Joint limits and foot positions from the robot's URDF (not a second copy of either)."""

    def __init__(self, profile: RobotProfile):
        from pupper_ros.sim.urdf import parse

        self.profile = profile
        self.root = parse(profile.urdf_path)
        joints = {j.get("name"): j for j in self.root.findall("joint")}
        missing = [j for j in profile.joints if j not in joints or joints[j].find("limit") is None]
        if missing:
            raise ValueError(f"{profile.urdf_path}: no joint with limits named {', '.join(missing)}")
        self.lower = np.array([float(joints[j].find("limit").get("lower")) for j in profile.joints])
        self.upper = np.array([float(joints[j].find("limit").get("upper")) for j in profile.joints])
        by_child = {j.find("child").get("link"): j for j in self.root.findall("joint")}
        self.leg_joints: dict[str, list[int]] = {}  # foot link -> profile indices of the joints that move it
        for foot in profile.feet:
            chain, link = [], foot
            while link in by_child:
                joint = by_child[link]
                if joint.get("name") in profile.joints:
                    chain.append(profile.joints.index(joint.get("name")))
                link = joint.find("parent").get("link")
            self.leg_joints[foot] = sorted(chain)

    def foot_height(self, foot: str, joint_position: np.ndarray) -> float:
        """The foot's height in the base frame (m) at these joint positions."""
        from pupper_ros.sim.urdf import link_poses

        return float(link_poses(self.root, dict(zip(self.profile.joints, joint_position)))[foot][1][2])


def foot_words(foot: str) -> str:
    """'leg_front_r_foot' -> 'front right'; other names as they are."""
    words = foot.lower().replace("_", " ").split()
    side = "right" if ({"r", "right"} & set(words)) or foot.lower().startswith("right") else (
        "left" if ({"l", "left"} & set(words)) or foot.lower().startswith("left") else "")
    end = "front" if "front" in foot.lower() else ("back" if ("back" in foot.lower() or "rear" in foot.lower()) else "")
    return f"{end} {side}".strip() or foot


def rest_pose(profile: RobotProfile) -> tuple[np.ndarray, float] | None:
    """The profile's ``rest`` section: where the joints lie after homing with the motors off, and how far from it a
    joint may be. None when the profile has none."""
    rest = profile.extra.get("rest")
    if rest is None:
        return None
    pose = np.asarray(rest.get("pose"), dtype=float)
    tolerance = float(rest.get("tolerance", 0.0))
    if pose.shape != (profile.num_joints,) or not np.all(np.isfinite(pose)) or not tolerance > 0:
        raise ValueError(f"robot profile {profile.name}: 'rest' needs 'pose' ({profile.num_joints} numbers) and a "
                         "positive 'tolerance'")
    return pose, tolerance


# --- the checks, each a function of what was recorded ----------------------------------------------------------
def check_joints(profile: RobotProfile, backend: Backend, recording: Recording) -> list[Finding]:
    if recording.empty:
        reasons = getattr(backend, "drop_reasons", lambda: {})()
        why = "; ".join(f"{stream}: {r}" for stream, r in reasons.items() if r) or backend.problem() or "no message"
        return [Finding("joints", FAIL, f"no usable sensor sample in {recording.seconds:g} s ({why})",
                        "every profile joint must be in /joint_states once, with a finite position and velocity; "
                        "check the robot's ros2_control description against the profile's joint names")]
    values = recording.joint_position
    if not np.all(np.isfinite(values)):
        bad = [profile.joints[i] for i in np.flatnonzero(~np.all(np.isfinite(values), axis=0))]
        return [Finding("joints", FAIL, f"non-finite readings from {', '.join(bad)}", "check those encoders")]
    return [Finding("joints", PASS, f"all {profile.num_joints} profile joints present once, readings finite")]


def check_range(profile: RobotProfile, kinematics: Kinematics, recording: Recording) -> list[Finding]:
    if recording.empty:
        return []
    q = recording.mean_position()
    below = kinematics.lower - RANGE_TOLERANCE - q
    above = q - kinematics.upper - RANGE_TOLERANCE
    outside = [f"{profile.joints[i]} {q[i]:+.3f} rad, {max(below[i], above[i]) + RANGE_TOLERANCE:.3f} rad past its "
               f"{'lower' if below[i] > 0 else 'upper'} limit" for i in np.flatnonzero((below > 0) | (above > 0))]
    if outside:
        return [Finding("joint range", FAIL, "outside the URDF's range: " + "; ".join(outside),
                        "a reading the joint cannot reach: a homing that ended elsewhere or an encoder offset; "
                        "re-home the robot (a joint a whole motor turn off is off by 2 pi / gear ratio)")]
    past_soft = [profile.joints[i] for i in np.flatnonzero((q < profile.lower_limits) | (q > profile.upper_limits))]
    note = f"; on their stops, past the software limits (expected at rest): {', '.join(past_soft)}" if past_soft else ""
    return [Finding("joint range", PASS, "every joint inside the URDF's range" + note)]


def check_rest_pose(profile: RobotProfile, recording: Recording) -> list[Finding]:
    rest = rest_pose(profile)
    if recording.empty:
        return []
    if rest is None:
        return [Finding("rest pose", WARN, f"the profile {profile.name} has no 'rest' pose to compare with",
                        "add a 'rest' section (pose, tolerance) to the robot profile to have homing checked")]
    pose, tolerance = rest
    q = recording.mean_position()
    turn = 2 * math.pi / profile.actuator.gear_ratio if profile.actuator.gear_ratio > 0 else math.inf
    problems, fixes = [], []
    for i in np.flatnonzero(np.abs(q - pose) > tolerance):
        off = q[i] - pose[i]
        turns = round(off / turn) if math.isfinite(turn) else 0
        if turns and abs(off - turns * turn) < MOTOR_TURN_MATCH:
            why = f"{turns:+d} motor turn{'s' if abs(turns) > 1 else ''} ({turns * turn:+.3f} rad): homing ended elsewhere"
            fixes.append("re-home the robot")
        elif abs(q[i] + pose[i]) <= tolerance and abs(pose[i]) > tolerance:
            why = "the rest value with its sign reversed: the joint's direction is reversed"
            fixes.append("fix the joint's direction in the robot's hardware description")
        else:
            why = "not where resting puts it"
            fixes.append("rest the robot on its belly with the motors off after homing, and run again")
        problems.append(f"{profile.joints[i]} reads {q[i]:+.3f} rad, rest {pose[i]:+.3f} ({why})")
    if problems:
        return [Finding("rest pose", FAIL, "; ".join(problems), "; ".join(dict.fromkeys(fixes)))]
    return [Finding("rest pose", PASS, f"every joint within {tolerance:g} rad of the profile's rest pose")]


def check_rates(backend: Backend, control_period: float, sensor_timeout: float, seconds: float) -> list[Finding]:
    findings = []
    now = time.monotonic()
    needed = 1.0 / control_period
    for stream, times in backend.message_times().items():
        recent = [t for t in times if now - t <= seconds]
        rate = len(recent) / seconds
        age = now - times[-1] if times else math.inf
        detail = f"{rate:.0f} Hz, newest {age * 1000:.0f} ms old" if times else "no valid message"
        if not times or rate < needed or age > sensor_timeout:
            findings.append(Finding(f"{stream} rate", FAIL,
                                    f"{detail}; the control loop needs {needed:g} Hz and samples under "
                                    f"{sensor_timeout * 1000:.0f} ms old",
                                    "check the broadcaster's or firmware's publish rate and the link's load"))
        else:
            verdict = PASS if rate >= 2 * needed else WARN  # at 1-2x, one late message leaves a tick without news
            findings.append(Finding(f"{stream} rate", verdict, f"{detail} (control loop: {needed:g} Hz)",
                                    "" if verdict == PASS else "a rate under twice the control rate leaves some ticks "
                                    "with a stale sample"))
    return findings


def check_imu(recording: Recording) -> list[Finding]:
    if recording.empty:
        return []
    norms = np.linalg.norm(recording.orientation, axis=1)
    findings = []
    if np.any(np.abs(norms - 1.0) > 0.01):
        findings.append(Finding("imu quaternion", FAIL, f"orientation norm {norms.min():.3f}-{norms.max():.3f}, not 1",
                                "the IMU driver must publish a unit quaternion"))
    g = recording.gravity()
    tilt = tilt_from_gravity(g)
    if tilt > FLAT_TOLERANCE:
        axis = np.cross(np.array([0.0, 0.0, -1.0]), g)
        axis = axis / (np.linalg.norm(axis) or 1.0)
        findings.append(Finding("imu at rest", FAIL,
                                f"gravity in the body frame is ({g[0]:+.2f}, {g[1]:+.2f}, {g[2]:+.2f}), "
                                f"{math.degrees(tilt):.0f} deg from straight down, about axis "
                                f"({axis[0]:+.2f}, {axis[1]:+.2f}, {axis[2]:+.2f})",
                                "with the robot resting flat this is the IMU's frame turned from the model's "
                                "base_link: fix the IMU's mounting rotation in the robot's description"))
    else:
        findings.append(Finding("imu at rest", PASS, f"gravity within {math.degrees(tilt):.1f} deg of the body's -z"))
    gyro = float(np.max(np.linalg.norm(recording.angular_velocity, axis=1)))
    findings.append(Finding("gyro at rest", PASS if gyro <= GYRO_AT_REST else FAIL,
                            f"largest angular velocity {gyro:.3f} rad/s (limit {GYRO_AT_REST:g} at rest)",
                            "" if gyro <= GYRO_AT_REST else "keep the robot still; otherwise a gyro bias: "
                            "recalibrate the IMU"))
    return findings


def check_controllers(backend: Backend) -> list[Finding]:
    report = getattr(backend, "controller_report", None)
    if report is None:
        return []
    from pupper_ros.backends.ros2_control_backend import NEURAL_CONTROLLER, switch_command

    findings = []
    states = report()
    forward = [c for c in states if c != NEURAL_CONTROLLER]
    for controller in forward:
        state, joints = states[controller]
        if joints:
            findings.append(Finding(controller, FAIL, f"{state}; {joints}",
                                    "load it with a 'joints' parameter listing every profile joint"))
        elif state == "active":
            findings.append(Finding(controller, PASS, "active, 'joints' covers every profile joint"))
        else:
            findings.append(Finding(controller, WARN, f"{state} ('joints' covers every profile joint)",
                                    f"launch with activate_controllers:=true, or: {switch_command(forward)}"))
    neural_state = states[NEURAL_CONTROLLER][0]
    if neural_state == "active":
        findings.append(Finding(NEURAL_CONTROLLER, WARN, "active: the robot's own policy drives the joints",
                                f"it must be inactive while pupper_ros walks: {switch_command(forward)}"))
    return findings


# --- guided: the owner moves the robot by hand ------------------------------------------------------------------
def check_leg(profile: RobotProfile, kinematics: Kinematics, foot: str, before: np.ndarray, after: np.ndarray) -> Finding:
    """The owner pulled ``foot`` down, away from the body: the leg's joints (and only those) must have moved so that,
    by the URDF's kinematics, the foot dropped in the body frame."""
    name = f"{foot_words(foot)} leg"
    leg = kinematics.leg_joints[foot]
    moved = [i for i in np.flatnonzero(np.abs(after - before) > MOVED)]
    elsewhere = [profile.joints[i] for i in moved if i not in leg]
    if elsewhere:
        return Finding(name, FAIL, f"moving the {foot_words(foot)} foot moved {', '.join(elsewhere)}",
                       "the joint order is off: the robot's joint names do not match the joints that moved")
    if not moved:
        return Finding(name, FAIL, f"no joint of the leg moved {MOVED:g} rad ({', '.join(profile.joints[i] for i in leg)})",
                       "pull the foot further, or check that these joints report their motion")

    def drop(start: np.ndarray, end: np.ndarray) -> float:
        return kinematics.foot_height(foot, start) - kinematics.foot_height(foot, end)

    if drop(before, after) >= FOOT_MOVE:
        return Finding(name, PASS, f"the foot dropped {drop(before, after) * 100:.1f} cm by the URDF's kinematics")
    reversed_ = []
    for i in moved:  # would the foot have dropped had joint i's readings their sign reversed?
        start, end = before.copy(), after.copy()
        start[i], end[i] = -before[i], -after[i]
        if drop(start, end) >= FOOT_MOVE:
            reversed_.append(profile.joints[i])
    why = (f"reversed: {', '.join(reversed_)} (with its readings' sign reversed the foot drops)" if reversed_
           else "no single reversed joint explains it")
    return Finding(name, FAIL, f"by the readings the foot rose {-drop(before, after) * 100:+.1f} cm instead of dropping; {why}",
                   "fix the joint's direction in the robot's hardware description")


def check_nose_up(before_gravity: np.ndarray, after_gravity: np.ndarray) -> Finding:
    """The owner lifted the robot's nose: the change of gravity in the body frame must point to the body's -x
    (REP 103: x forward), as it does for the model's base_link."""
    tilt = math.acos(float(np.clip(np.dot(before_gravity, after_gravity), -1.0, 1.0)))
    if tilt < NOSE_UP_MIN:
        return Finding("imu frame", FAIL, f"the body tilted {math.degrees(tilt):.0f} deg, not {math.degrees(NOSE_UP_MIN):.0f}",
                       "lift the nose higher, or check that the IMU reports orientation")
    change = after_gravity - before_gravity
    turned = math.atan2(change[1], -change[0])  # 0 when the change points to -x
    if abs(turned) > IMU_TURN_TOLERANCE:
        return Finding("imu frame", FAIL, f"lifting the nose moved gravity toward ({change[0]:+.2f}, {change[1]:+.2f}) "
                       f"in the body frame: the IMU frame is turned {math.degrees(turned):+.0f} deg about z from the model's",
                       "fix the IMU's mounting rotation in the robot's description")
    return Finding("imu frame", PASS, f"nose-up tilted gravity toward the body's -x (within {math.degrees(turned):+.0f} deg)")


def guided(profile: RobotProfile, backend: Backend, kinematics: Kinematics, ask: Callable[[str], None],
           hold_seconds: float = 0.5) -> list[Finding]:
    """Ask the owner to tilt the robot, then to move each foot; check each motion against the model."""
    findings = []
    before = record(backend, hold_seconds, profile.num_joints)
    ask("With the robot on the ground, lift its nose about 20 degrees (back feet down) and hold it")
    after = record(backend, hold_seconds, profile.num_joints)
    ask("Put the robot down flat")
    if not (before.empty or after.empty):
        findings.append(check_nose_up(before.gravity(), after.gravity()))
    ask("Lift the robot by its body and hold it in the air, legs hanging")
    for foot in profile.feet:
        before = record(backend, hold_seconds, profile.num_joints)
        ask(f"Pull the {foot_words(foot)} foot about 3 cm down, away from the body, and hold it")
        after = record(backend, hold_seconds, profile.num_joints)
        ask(f"Let go of the {foot_words(foot)} foot")
        if before.empty or after.empty:
            findings.append(Finding(f"{foot_words(foot)} leg", FAIL, "no sensor samples while it moved"))
            continue
        findings.append(check_leg(profile, kinematics, foot, before.mean_position(), after.mean_position()))
    ask("Put the robot down")
    return findings


# --- running it -------------------------------------------------------------------------------------------------
def open_backend(args, profile: RobotProfile, control_period: float) -> Backend:
    """The daemon's backend for ``args.backend``, opened so that it sends nothing that can move the robot."""
    cls = backend_class(args.backend)
    if args.backend == "ros2_control":
        backend = cls(profile, control_period, joint_states_topic=args.joint_states_topic, imu_topic=args.imu_topic,
                      position_controller=args.position_controller, kp_controller=args.kp_controller,
                      kd_controller=args.kd_controller, timeout=args.timeout)
        backend.observe()
    elif args.backend == "serial":
        backend = cls(profile, control_period, port=args.port, baud=args.baud)
        backend.open()  # the motors idle until a command, which preflight never sends
    else:
        raise ValueError(f"pupper-preflight checks a robot: backend 'ros2_control' or 'serial', not {args.backend!r}")
    return backend


def run(args, ask: Callable[[str], None] | None = None) -> tuple[list[Finding], int]:
    """Every check for ``args``; (findings, exit code)."""
    profile = load_robot_profile(args.robot)
    kinematics = Kinematics(profile)
    control_period = CURRENT_CONTRACT.control_period
    limits = SafetyLimits(control_period=control_period)
    try:
        backend = open_backend(args, profile, control_period)
    except BackendError as exc:
        return [Finding("connect", FAIL, str(exc), "")], 2
    try:
        deadline = time.monotonic() + args.timeout  # the first message may take discovery's time
        while backend.latest_sample(time.monotonic()) is None and time.monotonic() < deadline:
            time.sleep(0.02)
        recording = record(backend, args.seconds, profile.num_joints)
        findings = [Finding("connect", PASS, f"{args.backend} link open (read-only)")]
        findings += check_controllers(backend)
        findings += check_joints(profile, backend, recording)
        findings += check_range(profile, kinematics, recording)
        findings += check_rest_pose(profile, recording)
        findings += check_rates(backend, control_period, limits.sensor_timeout, args.seconds)
        findings += check_imu(recording)
        if args.guided and not recording.empty:
            findings += guided(profile, backend, kinematics, ask or _ask_on_terminal)
    finally:
        backend.close()
    return findings, 1 if any(f.verdict == FAIL for f in findings) else 0


def _ask_on_terminal(prompt: str) -> None:
    input(f"{prompt}, then press Enter: ")


def table(findings: list[Finding]) -> str:
    width = max(len(f.check) for f in findings)
    lines = []
    for f in findings:
        lines.append(f"{f.verdict:4}  {f.check:{width}}  {f.detail}")
        if f.fix and f.verdict != PASS:
            lines.append(f"{'':4}  {'':{width}}  -> {f.fix}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pupper-preflight", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", required=True, choices=("ros2_control", "serial"))
    parser.add_argument("--robot", default=BY_NAME["robot"].default, help="robot profile name or YAML path")
    parser.add_argument("--port", default=BY_NAME["serial_port"].default, help="serial: the motor controller's device")
    parser.add_argument("--baud", type=int, default=BY_NAME["serial_baud"].default)
    for name in ("joint_states_topic", "imu_topic", "position_controller", "kp_controller", "kd_controller"):
        parser.add_argument(f"--{name.replace('_', '-')}", dest=name, default=BY_NAME[name].default,
                            help=f"ros2_control: {BY_NAME[name].description.split(': ', 1)[-1]}")
    parser.add_argument("--seconds", type=float, default=2.0, help="how long to record the resting robot")
    parser.add_argument("--timeout", type=float, default=5.0, help="s to wait for the robot's first answers")
    parser.add_argument("--guided", action="store_true", help="then ask the owner to lift each foot and the nose")
    parser.add_argument("--json", type=Path, help="also write the findings to this file")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.seconds <= 0 or args.timeout <= 0:
        print("pupper-preflight: --seconds and --timeout must be positive", file=sys.stderr)
        return 2
    context = None
    if args.backend == "ros2_control":
        import rclpy

        rclpy.init()
        context = rclpy
    try:
        findings, code = run(args)
    finally:
        if context is not None:
            context.try_shutdown()
    print(table(findings))
    print(f"\n{'PASSED' if code == 0 else 'NOT READY' if code == 1 else 'ROBOT NOT REACHED'}: "
          f"{sum(f.verdict == FAIL for f in findings)} failed, {sum(f.verdict == WARN for f in findings)} warnings")
    if args.json:
        args.json.write_text(json.dumps({"robot": args.robot, "backend": args.backend, "exit_code": code,
                                         "findings": [asdict(f) for f in findings]}, indent=2) + "\n")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
