"""``pupper-teleop --joy``: drive the daemon from a gamepad, through ``joy_node``'s ``/joy``.

Hold the deadman button and the sticks drive: velocity scaled to the robot profile's command ranges, with a dead
zone. Released, nothing but one zero command is published (so another driver may use ``/cmd_vel``); a ``/joy`` that
goes silent (the pad out of range) gets one zero command after ``JOY_TIMEOUT``, and the daemon's own command timeout
stops the robot either way. Edge-triggered buttons: emergency stop (``/emergency_stop``), clear fault
(``/pupper_walk/clear_fault``), next policy (``/pupper_walk/select_policy``, through the daemon's policy list).
Button and axis indices come from a mapping file: ``pupper_ros/ros/joy_mappings/<name>.yaml`` (``dualsense``, ``xbox``)
or ``--mapping FILE``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from pupper_ros.parameters import FIRST_POLICY, policy_entries

MAPPINGS_DIR = Path(__file__).with_name("joy_mappings")
AXES = ("vx", "vy", "yaw")
BUTTONS = ("deadman", "emergency_stop", "clear_fault", "next_policy")
JOY_TIMEOUT = 0.5  # s of /joy silence, deadman held, before teleop publishes zero itself


class MappingError(ValueError):
    """A gamepad mapping file that cannot be used; the message names the file and the key."""


@dataclass(frozen=True)
class JoyMapping:
    name: str
    axes: dict[str, tuple[int, float]]  # command axis -> (Joy.axes index, sign)
    buttons: dict[str, int]  # action -> Joy.buttons index
    dead_zone: float

    @classmethod
    def load(cls, name_or_path: str) -> "JoyMapping":
        """A shipped mapping by name (``dualsense``, ``xbox``) or a YAML file of the same shape."""
        path = Path(name_or_path)
        if not path.suffix:
            path = MAPPINGS_DIR / f"{name_or_path}.yaml"
        if not path.is_file():
            shipped = ", ".join(sorted(p.stem for p in MAPPINGS_DIR.glob("*.yaml")))
            raise MappingError(f"no gamepad mapping '{name_or_path}' (shipped: {shipped}; or give a YAML file)")
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise MappingError(f"{path}: not YAML: {exc}") from exc

        def index(section: str, key: str, value) -> int:
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise MappingError(f"{path}: {section}.{key} must be an index >= 0, got {value!r}")
            return value

        axes = {}
        for key in AXES:
            entry = (raw.get("axes") or {}).get(key)
            if not isinstance(entry, dict) or entry.get("sign") not in (1, -1):
                raise MappingError(f"{path}: axes.{key} must be {{index: N, sign: 1 or -1}}, got {entry!r}")
            axes[key] = (index("axes", key, entry.get("index")), float(entry["sign"]))
        buttons = {key: index("buttons", key, (raw.get("buttons") or {}).get(key)) for key in BUTTONS}
        dead_zone = raw.get("dead_zone", 0.1)
        if not isinstance(dead_zone, (int, float)) or not 0 <= dead_zone < 1:
            raise MappingError(f"{path}: dead_zone must be in [0, 1), got {dead_zone!r}")
        return cls(str(raw.get("name", path.stem)), axes, buttons, float(dead_zone))


@dataclass
class JoyActions:
    """What one /joy message asks for."""

    command: tuple[float, float, float] | None = None  # None: publish nothing on /cmd_vel
    emergency_stop: bool = False
    clear_fault: bool = False
    next_policy: bool = False
    problem: str = ""  # a message that could not be read, and why


class JoyCommander:
    """Joy messages to commands and actions; pure logic, tested without ROS."""

    def __init__(self, mapping: JoyMapping, command_low, command_high):
        self.mapping = mapping
        self.low, self.high = np.asarray(command_low, float), np.asarray(command_high, float)
        self.driving = False  # deadman held at the last message
        self._pressed = {key: False for key in BUTTONS}
        need_axes = max(i for i, _ in mapping.axes.values()) + 1
        need_buttons = max(mapping.buttons.values()) + 1
        self._need = (need_axes, need_buttons)

    def stick(self, value: float) -> float:
        """A stick's value past the dead zone, rescaled to [-1, 1] so the command starts from zero at its edge."""
        dz = self.mapping.dead_zone
        if not math.isfinite(value) or abs(value) <= dz:
            return 0.0
        return math.copysign(min(1.0, (abs(value) - dz) / (1.0 - dz)), value)

    def update(self, axes, buttons) -> JoyActions:
        if len(axes) < self._need[0] or len(buttons) < self._need[1]:
            actions = self.release()
            actions.problem = (f"/joy has {len(axes)} axes and {len(buttons)} buttons; the mapping "
                               f"'{self.mapping.name}' needs {self._need[0]} and {self._need[1]}")
            return actions
        actions = JoyActions()
        for key in ("emergency_stop", "clear_fault", "next_policy"):
            down = bool(buttons[self.mapping.buttons[key]])
            setattr(actions, key, down and not self._pressed[key])
            self._pressed[key] = down
        if bool(buttons[self.mapping.buttons["deadman"]]) and not actions.emergency_stop:
            self.driving = True
            values = []
            for k, key in enumerate(AXES):
                i, sign = self.mapping.axes[key]
                s = self.stick(sign * float(axes[i]))
                values.append(s * self.high[k] if s > 0 else -s * self.low[k])
            actions.command = tuple(values)
        elif self.driving:
            actions.command = self.release().command
        return actions

    def release(self) -> JoyActions:
        """The pad let go (deadman released, /joy silent or unreadable): one zero command if it was driving."""
        was_driving, self.driving = self.driving, False
        return JoyActions(command=(0.0, 0.0, 0.0) if was_driving else None)


def policy_order(policies: str) -> list[str]:
    """The daemon's policies in the order next-policy steps through them, from its ``policies`` parameter: the
    ``policy`` parameter's first (``default``), then each entry's name."""
    return [FIRST_POLICY] + [name for name, _ in policy_entries(policies)]


def run(args, profile) -> int:
    """The ROS node: subscribe /joy, publish /cmd_vel and /emergency_stop, call the daemon's services."""
    import signal
    import threading
    import time

    import rclpy
    from geometry_msgs.msg import Twist, TwistStamped
    from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
    from rcl_interfaces.srv import GetParameters, SetParameters
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from rclpy.signals import SignalHandlerOptions
    from sensor_msgs.msg import Joy
    from std_msgs.msg import Empty
    from std_srvs.srv import Trigger

    try:
        mapping = JoyMapping.load(args.mapping)
    except MappingError as exc:
        print(f"pupper-teleop: {exc}")
        return 2
    commander = JoyCommander(mapping, profile.command_low, profile.command_high)
    stop = threading.Event()
    rclpy.init(signal_handler_options=SignalHandlerOptions.NO)  # our handlers: a zero command goes out before exit
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: stop.set())
    node = rclpy.create_node("pupper_teleop_joy")
    log = node.get_logger()
    reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    cmd_pub = node.create_publisher(TwistStamped if args.stamped else Twist, args.topic, reliable)
    estop_pub = node.create_publisher(Empty, "/emergency_stop", reliable)
    daemon = args.daemon.rstrip("/")
    clear_client = node.create_client(Trigger, f"{daemon}/clear_fault")
    select_client = node.create_client(SetParameters, f"{daemon}/select_policy")
    params_client = node.create_client(GetParameters, f"{daemon}/get_parameters")
    lock = threading.Lock()
    last_joy = [time.monotonic()]
    selected = [0]  # index in policy_order of the policy this teleop last selected; the daemon starts with the first
    problems: set[str] = set()

    def publish(command) -> None:
        msg = TwistStamped() if args.stamped else Twist()
        twist = msg.twist if args.stamped else msg
        if args.stamped:
            msg.header.stamp = node.get_clock().now().to_msg()
        twist.linear.x, twist.linear.y, twist.angular.z = (float(v) for v in command)
        cmd_pub.publish(msg)

    def answered(future, what: str, describe) -> None:
        def done(f):
            try:
                log.info(f"{what}: {describe(f.result())}")
            except Exception as exc:  # noqa: BLE001 - the daemon went away mid-call
                log.warning(f"{what}: no answer ({exc})")
        future.add_done_callback(done)

    def next_policy() -> None:
        if not params_client.service_is_ready() or not select_client.service_is_ready():
            log.warning(f"next policy: {daemon} does not offer its policies (is pupper-walk running?)")
            return
        request = GetParameters.Request(names=["policies"])

        def got(f):
            names = policy_order(f.result().values[0].string_value)
            if len(names) < 2:
                log.info("next policy: the daemon has one policy")
                return
            target = (selected[0] + 1) % len(names)
            value = ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=names[target])

            def switched(g):
                result = g.result().results[0]
                if result.successful:
                    selected[0] = target
                log.info(f"select policy '{names[target]}': {'done' if result.successful else result.reason}")
            select_client.call_async(SetParameters.Request(parameters=[Parameter(name="policy", value=value)])) \
                .add_done_callback(switched)
        params_client.call_async(request).add_done_callback(got)

    def on_joy(msg) -> None:
        with lock:
            last_joy[0] = time.monotonic()
            actions = commander.update(list(msg.axes), list(msg.buttons))
        if actions.problem and actions.problem not in problems:
            problems.add(actions.problem)
            log.error(actions.problem)
        if actions.emergency_stop:
            estop_pub.publish(Empty())
            log.warning("emergency stop")
        if actions.command is not None:
            publish(actions.command)
        if actions.clear_fault:
            if clear_client.service_is_ready():
                answered(clear_client.call_async(Trigger.Request()), "clear fault", lambda r: r.message)
            else:
                log.warning(f"clear fault: {daemon}/clear_fault is not available")
        if actions.next_policy:
            next_policy()

    def watch_silence() -> None:
        with lock:
            silent = time.monotonic() - last_joy[0] > JOY_TIMEOUT
            actions = commander.release() if silent else None
        if actions is not None and actions.command is not None:
            publish(actions.command)
            log.warning(f"/joy silent for {JOY_TIMEOUT:g} s: zero command sent")

    node.create_subscription(Joy, "/joy", on_joy, 10)
    node.create_timer(JOY_TIMEOUT / 5, watch_silence)
    log.info(f"driving from /joy with the {mapping.name} mapping; hold button {mapping.buttons['deadman']} to drive")
    try:
        while not stop.is_set():
            rclpy.spin_once(node, timeout_sec=0.05)
    finally:
        if commander.driving:
            publish((0.0, 0.0, 0.0))
        node.destroy_node()
        rclpy.try_shutdown()
    return 0
