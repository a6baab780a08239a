"""``pupper-teleop``: drive the robot from a terminal, for machines without teleop_twist_keyboard, or with
``--joy`` from a gamepad through joy_node (``pupper_ros/ros/joy_teleop.py``).

w/s or up/down: forward/backward; a/d or left/right: turn; q/e: sideways; +/-: speed step; space: stop; x or
Ctrl-C: quit (sends a zero command first). Publishes geometry_msgs/Twist (or TwistStamped with --stamped) at 10 Hz.
"""

from __future__ import annotations

import argparse
import select
import sys
import termios
import tty

from pupper_ros.parameters import NODE_NAME

KEYS = {
    "w": (1, 0, 0), "\x1b[A": (1, 0, 0),
    "s": (-1, 0, 0), "\x1b[B": (-1, 0, 0),
    "a": (0, 0, 1), "\x1b[D": (0, 0, 1),
    "d": (0, 0, -1), "\x1b[C": (0, 0, -1),
    "q": (0, 1, 0), "e": (0, -1, 0),
}
SPEED_STEPS = (0.1, 0.2, 0.3, 0.45, 0.6)
YAW_PER_LINEAR = 3.0  # rad/s of yaw per m/s of the speed step


class KeyState:
    """Turns key presses into a (vx, vy, yaw rate) command; pure logic, testable without a terminal."""

    def __init__(self):
        self.step = 1
        self.direction = (0, 0, 0)
        self.quit = False

    def press(self, key: str) -> None:
        if key in KEYS:
            self.direction = KEYS[key]
        elif key == " ":
            self.direction = (0, 0, 0)
        elif key in ("+", "="):
            self.step = min(self.step + 1, len(SPEED_STEPS) - 1)
        elif key in ("-", "_"):
            self.step = max(self.step - 1, 0)
        elif key in ("x", "\x03"):
            self.direction, self.quit = (0, 0, 0), True

    @property
    def command(self) -> tuple[float, float, float]:
        speed = SPEED_STEPS[self.step]
        vx, vy, yaw = self.direction
        return vx * speed, vy * speed, yaw * speed * YAW_PER_LINEAR


def _read_key(timeout: float) -> str:
    ready, _, _ = select.select([sys.stdin], [], [], timeout)
    if not ready:
        return ""
    key = sys.stdin.read(1)
    if key == "\x1b":
        key += sys.stdin.read(2)
    return key


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pupper-teleop", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stamped", action="store_true", help="publish TwistStamped")
    parser.add_argument("--topic", default="/cmd_vel")
    parser.add_argument("--joy", action="store_true", help="drive from a gamepad: sensor_msgs/Joy on /joy (joy_node)")
    parser.add_argument("--mapping", default="dualsense",
                        help="--joy: gamepad mapping, a shipped one (dualsense, xbox) or a YAML file")
    parser.add_argument("--robot", default="pupper_v3", help="--joy: robot profile whose command ranges the sticks span")
    parser.add_argument("--daemon", default=f"/{NODE_NAME}", help="--joy: the daemon's node, for its services")
    args = parser.parse_args(argv)
    if args.joy:
        from pupper_ros.ros import joy_teleop
        from pupper_ros.robot_profile import ProfileError, load_robot_profile

        try:
            profile = load_robot_profile(args.robot)
        except ProfileError as exc:
            print(f"pupper-teleop: {exc}", file=sys.stderr)
            return 2
        return joy_teleop.run(args, profile)
    if not sys.stdin.isatty():
        print("pupper-teleop: needs an interactive terminal", file=sys.stderr)
        return 2

    import rclpy
    from geometry_msgs.msg import Twist, TwistStamped

    rclpy.init()
    node = rclpy.create_node("pupper_teleop")
    pub = node.create_publisher(TwistStamped if args.stamped else Twist, args.topic, 10)
    keys = KeyState()

    def publish():
        vx, vy, yaw = keys.command
        msg = TwistStamped() if args.stamped else Twist()
        twist = msg.twist if args.stamped else msg
        if args.stamped:
            msg.header.stamp = node.get_clock().now().to_msg()
        twist.linear.x, twist.linear.y, twist.angular.z = float(vx), float(vy), float(yaw)
        pub.publish(msg)
        return vx, vy, yaw

    saved = termios.tcgetattr(sys.stdin)
    print(__doc__.split("\n\n", 1)[1])
    try:
        tty.setcbreak(sys.stdin.fileno())
        while not keys.quit:
            keys.press(_read_key(0.1))
            vx, vy, yaw = publish()
            print(f"\rvx {vx:+.2f} m/s  vy {vy:+.2f} m/s  yaw {yaw:+.2f} rad/s  (step {SPEED_STEPS[keys.step]:.2f})   ", end="", flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        keys.direction = (0, 0, 0)
        publish()
        termios.tcsetattr(sys.stdin, termios.TCSADRAIN, saved)
        print()
        node.destroy_node()
        rclpy.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
