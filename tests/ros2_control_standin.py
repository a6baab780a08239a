"""Test stand-in for ros2_control on a Pupper v3 (controller_manager and its controllers are not installable here).

It puts the project's simulated robot (MuJoCo, as under the robot's own ``sim:=True``; physics and PD at 500 Hz, the
commanded kp and kd applied per joint and clamped as the robot's hardware interface clamps them) behind exactly the
interfaces the robot's stack offers. MuJoCo runs this robot about ten times faster than PyBullet with its rotors, so the
stand-in keeps real time on a busy machine: a simulation that fell behind the wall clock would see the daemon's 50 Hz
as a faster policy and the robot walk faster than commanded.
- joint_state_broadcaster: ``/joint_states`` at 260 Hz, joints in an order other than the policy's;
- imu_sensor_broadcaster: ``/imu_sensor_broadcaster/imu`` at 260 Hz, holding 100 Hz samples (the BNO086's rate), in
  base_link, linear acceleration zero (the robot's accelerometer is off);
- three forward_command_controller nodes, ``forward_position_controller``, ``forward_kp_controller`` and
  ``forward_kd_controller``, each with a ``joints`` parameter in yet another order, taking
  ``std_msgs/Float64MultiArray`` on ``/<name>/commands`` while active (an inactive one ignores them). Like the real
  stack it has no command watchdog;
- controller_manager's ``/controller_manager/list_controllers`` and ``/controller_manager/switch_controller``
  (through the test stand-in of controller_manager_msgs, tests/controller_manager_msgs), over those three and the
  robot's own ``neural_controller``. By default the forward controllers are active and neural_controller inactive, as
  after ``ros2 control switch_controllers``; a switch is all or nothing under STRICT, as far as it can go under
  BEST_EFFORT, and an unconfigured controller cannot be activated.

In-process (``Ros2ControlStandIn(profile).start()``), or as a process of its own, as ros2_control runs on the robot
(``python -m tests.ros2_control_standin``; ``StandInProcess`` in the tests): then it also publishes the robot's ground
truth as nav_msgs/Odometry on ``/standin/odom`` (a test-only topic; ``pupper-walk --demo --demo-odom /standin/odom``
measures the demo on it), prints ``ready`` once it broadcasts, goes silent when ``silent`` is written to its
standard input and sets a controller's state on ``state NAME STATE`` (``state forward_kp_controller inactive``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time

import numpy as np
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from nav_msgs.msg import Odometry
from sensor_msgs.msg import Imu, JointState
from std_msgs.msg import Float64MultiArray

from controller_manager_msgs.msg import ControllerState
from controller_manager_msgs.srv import ListControllers, SwitchController
from pupper_ros.sim import make_simulation
from pupper_ros.sim.sensor_faults import SensorFaults

PHYSICS_HZ = 500.0
BROADCAST_HZ = 260.0
IMU_SAMPLE_HZ = 100.0
HARDWARE_KP_MAX, HARDWARE_KD_MAX = 10.0, 1.0  # the hardware interface's clamps


def other_order(joints, seed: int) -> list[str]:
    order = list(joints)
    rng = np.random.default_rng(seed)
    while order == list(joints):
        rng.shuffle(order)
    return order


NEURAL_CONTROLLER = "neural_controller"
FORWARD_TYPE = "forward_command_controller/ForwardCommandController"


class ForwardController:
    """One forward_command_controller; ``joints`` is its parameter's value (a test may give it the wrong type)."""

    def __init__(self, context, name: str, joints, profile_index: dict, state: str = "active"):
        self.name = name
        self.state = state
        self.node = rclpy.create_node(name, context=context, parameter_overrides=[Parameter("joints", value=joints)],
                                      automatically_declare_parameters_from_overrides=True)
        self._profile_index = profile_index
        self.values: np.ndarray | None = None
        self.received = 0
        self.lock = threading.Lock()
        self._set_joints(joints)
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.node.create_subscription(Float64MultiArray, f"/{name}/commands", self._on_commands, reliable)

    def _set_joints(self, joints) -> None:
        names = isinstance(joints, list) and all(isinstance(j, str) for j in joints)
        self.joints = list(joints) if names else []
        self.slots = np.array([self._profile_index[j] for j in self.joints if j in self._profile_index], dtype=int)

    def reload(self, joints: list[str]) -> None:
        """Reloaded with another ``joints`` parameter (as after a controller restart with a changed config)."""
        self.node.set_parameters([Parameter("joints", value=joints)])
        with self.lock:
            self._set_joints(joints)
            self.values = None

    def _on_commands(self, msg: Float64MultiArray) -> None:
        if self.state != "active" or len(msg.data) != len(self.joints):  # ignored, as the real controller does
            return
        with self.lock:
            self.values = np.asarray(msg.data, dtype=np.float64)
            self.received += 1


class ControllerManager:
    """``/controller_manager``'s two services over the stand-in's controllers: ``states`` maps name -> state."""

    def __init__(self, context, states: dict[str, str], on_change=None):
        self.states = states
        self.on_change = on_change
        self.switch_requests: list = []
        self.node = rclpy.create_node("controller_manager", context=context)
        self.node.create_service(ListControllers, "/controller_manager/list_controllers", self._list)
        self.node.create_service(SwitchController, "/controller_manager/switch_controller", self._switch)

    def _list(self, _request, response):
        response.controller = [ControllerState(name=name, state=state, type=FORWARD_TYPE if name != NEURAL_CONTROLLER
                                               else "neural_controller/NeuralController")
                               for name, state in self.states.items()]
        return response

    def _switch(self, request, response):
        self.switch_requests.append(request)
        problems = [f"'{n}' is not loaded" for n in [*request.activate_controllers, *request.deactivate_controllers]
                    if n not in self.states]
        problems += [f"'{n}' is unconfigured" for n in request.activate_controllers if self.states.get(n) == "unconfigured"]
        if problems and request.strictness == SwitchController.Request.STRICT:
            response.ok, response.message = False, "; ".join(problems)
            return response
        for names, state in ((request.deactivate_controllers, "inactive"), (request.activate_controllers, "active")):
            for name in names:
                if name in self.states and self.states[name] != "unconfigured":
                    self.set_state(name, state)
        response.ok, response.message = True, "; ".join(problems)
        return response

    def set_state(self, name: str, state: str) -> None:
        self.states[name] = state
        if self.on_change is not None:
            self.on_change(name, state)


class Ros2ControlStandIn:
    """The simulated robot behind the ros2_control interfaces; ``start`` it, ``stop`` it, ``go_silent`` to stop the
    broadcasters, ``ground_truth`` for what really happened."""

    def __init__(self, profile, *, context=None, joints_override: dict | None = None, states: dict | None = None,
                 sensor_faults: dict | None = None):
        self.profile = profile
        self.faults = SensorFaults.from_dict(sensor_faults)
        self.context = context or rclpy.Context()
        self._own_context = context is None
        if self._own_context:
            rclpy.init(context=self.context)
        index = {j: i for i, j in enumerate(profile.joints)}
        self.broadcast_order = other_order(profile.joints, 1)
        self._from_profile = np.array([index[j] for j in self.broadcast_order])
        names = {"position": "forward_position_controller", "kp": "forward_kp_controller", "kd": "forward_kd_controller"}
        states = {**{name: "active" for name in names.values()}, NEURAL_CONTROLLER: "inactive", **(states or {})}
        self.controllers = {}
        for seed, (role, name) in enumerate(names.items(), start=2):
            joints = (joints_override or {}).get(name, other_order(profile.joints, seed))
            self.controllers[role] = ForwardController(self.context, name, joints, index, states[name])
        self.by_name = {c.name: c for c in self.controllers.values()}
        self.manager = ControllerManager(self.context, states, on_change=self._on_state)
        self.broadcaster = rclpy.create_node("joint_state_broadcaster", context=self.context)
        self.joint_pub = self.broadcaster.create_publisher(JointState, "/joint_states", 10)
        self.imu_node = rclpy.create_node("imu_sensor_broadcaster", context=self.context)
        self.imu_pub = self.imu_node.create_publisher(Imu, "/imu_sensor_broadcaster/imu", 10)
        self.sim = make_simulation(profile, "mujoco", physics_dt=1.0 / PHYSICS_HZ)
        self.sim.reset(base_height=profile.standing_height)
        self.sim.set_targets(profile.default_pose, kp=0.0, kd=0.1)
        self.sim.step(int(PHYSICS_HZ * 2.5))  # settles limp, knees on their stops, as the robot rests after homing
        self.physics_steps = 0
        self._hand: tuple[np.ndarray, np.ndarray] | None = None  # (targets, which joints) a hand holds
        self._held_base = None  # the body's pose while a hand holds it
        self._broadcasts = 0
        self.lock = threading.Lock()
        self.silent = False
        self.published = 0
        self._stop = threading.Event()
        # One executor thread: with rclpy's MultiThreadedExecutor (2 threads) the physics thread lost the GIL to its
        # pool for up to 1.2 s at a time, and /joint_states went silent for 100-380 ms in 3 runs of 4 (measured
        # 2026-12-02: the gaps were in the stand-in's own stamps, so the daemon only saw them).
        self._executor = SingleThreadedExecutor(context=self.context)
        for node in self._nodes():
            self._executor.add_node(node)
        self._threads = [threading.Thread(target=self._spin, daemon=True), threading.Thread(target=self._run, daemon=True)]

    def _nodes(self):
        return [c.node for c in self.controllers.values()] + [self.manager.node, self.broadcaster, self.imu_node]

    def start(self) -> "Ros2ControlStandIn":
        for thread in self._threads:
            thread.start()
        return self

    def go_silent(self) -> None:
        self.silent = True

    def _on_state(self, name: str, state: str) -> None:
        if name in self.by_name:
            self.by_name[name].state = state

    def set_state(self, name: str, state: str) -> None:
        """A controller changes state behind the daemon's back (``ros2 control set_controller_state``)."""
        self.manager.set_state(name, state)

    def ground_truth(self):
        with self.lock:
            return self.sim.state()

    def hold_joints(self, positions: dict[str, float] | None) -> None:
        """A hand moves these joints to these positions and holds them there (None: lets go)."""
        with self.lock:
            if positions is None:
                self._hand = None
                self.sim.set_targets(self.sim.targets, kp=0.0, kd=0.1)
                return
            held = np.zeros(self.profile.num_joints, dtype=bool)
            targets = self.sim.joint_states()[0].copy()
            for joint, value in positions.items():
                i = self.profile.joints.index(joint)
                held[i], targets[i] = True, value
            self._hand = (targets, held)

    def hold_body(self, orientation_xyzw, lift: float = 0.05) -> None:
        """A hand holds the body at this orientation, ``lift`` m above where it is (None: lets go)."""
        with self.lock:
            lifted = self.sim.state().base_position + np.array([0.0, 0.0, lift])
            self._held_base = None if orientation_xyzw is None else (lifted, np.asarray(orientation_xyzw, float))

    def last_command(self, role: str) -> np.ndarray | None:
        """The newest values a controller received, in the profile's joint order."""
        controller = self.controllers[role]
        with controller.lock:
            if controller.values is None:
                return None
            out = np.full(self.profile.num_joints, np.nan)
            out[controller.slots] = controller.values[: len(controller.slots)]
            return out

    def _spin(self) -> None:
        while not self._stop.is_set():
            try:
                self._executor.spin_once(timeout_sec=0.05)
            except Exception:  # noqa: BLE001 - the context is shutting down
                return

    def _apply_commands(self) -> None:
        position, kp, kd = (self.last_command(role) for role in ("position", "kp", "kd"))
        if position is None or kp is None or kd is None:
            return
        targets = np.where(np.isfinite(position), position, self.sim.targets)
        self.sim.set_targets(targets, kp=np.clip(np.nan_to_num(kp), 0.0, HARDWARE_KP_MAX),
                             kd=np.clip(np.nan_to_num(kd), 0.0, HARDWARE_KD_MAX))

    def _apply_hand(self) -> None:
        if self._hand is not None:
            targets, held = self._hand
            self.sim.set_targets(np.where(held, targets, self.sim.targets), kp=np.where(held, 3.0, 0.0), kd=0.1)
        if self._held_base is not None:
            self.sim.set_base_pose(*self._held_base)
            self.sim.set_base_velocity(np.zeros(3), np.zeros(3))

    def _run(self) -> None:
        """Physics on the wall clock: every step that is due is taken (a late wake-up catches up, as physical time
        would), and the broadcasters publish at their own rates from the newest state."""
        dt = 1.0 / PHYSICS_HZ
        started = time.monotonic()
        next_broadcast = next_imu_sample = started
        imu = None
        while not self._stop.is_set():
            due = int((time.monotonic() - started) / dt)
            with self.lock:
                while self.physics_steps < due:
                    self._apply_commands()
                    self._apply_hand()
                    self.sim.step(1)
                    self.physics_steps += 1
                now = time.monotonic()
                if now >= next_imu_sample or imu is None:
                    state = self.sim.state()
                    imu = (state.base_orientation.copy(), state.base_angular_velocity.copy())
                    next_imu_sample = max(next_imu_sample + 1.0 / IMU_SAMPLE_HZ, now - 1.0 / IMU_SAMPLE_HZ)
                broadcast = now >= next_broadcast
                if broadcast:
                    q, qd = self.sim.joint_states()
                    torque = self.sim.torque.copy()
                    next_broadcast = max(next_broadcast + 1.0 / BROADCAST_HZ, now - 1.0 / BROADCAST_HZ)
            if broadcast and not self.silent:
                self._broadcast(q, qd, torque, imu)
            time.sleep(max(0.0, started + (self.physics_steps + 1) * dt - time.monotonic()))

    def _broadcast(self, q, qd, torque, imu) -> None:
        self._broadcasts += 1
        if self._broadcasts % self.faults.rate_divisor:
            return
        stamp = self.broadcaster.get_clock().now().to_msg()
        joints = JointState()
        joints.header.stamp = stamp
        position, velocity = self.faults.joints(self.broadcast_order, q[self._from_profile], qd[self._from_profile])
        kept = [k for k, name in enumerate(self.broadcast_order) if name not in self.faults.missing]
        joints.name = [self.broadcast_order[k] for k in kept]
        joints.position = position[kept].tolist()
        joints.velocity = velocity[kept].tolist()
        joints.effort = torque[self._from_profile][kept].tolist()
        self.joint_pub.publish(joints)
        msg = Imu()
        msg.header.stamp = stamp
        msg.header.frame_id = "base_link"
        orientation, rates = self.faults.imu(*imu)
        msg.orientation.x, msg.orientation.y, msg.orientation.z, msg.orientation.w = orientation.tolist()
        msg.angular_velocity.x, msg.angular_velocity.y, msg.angular_velocity.z = rates.tolist()
        self.imu_pub.publish(msg)
        self.published += 1

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            if thread.is_alive():
                thread.join(timeout=2.0)
        self._executor.shutdown(timeout_sec=1.0)
        for node in self._nodes():
            node.destroy_node()
        self.sim.close()
        if self._own_context:
            rclpy.shutdown(context=self.context)


def main(argv: list[str] | None = None) -> int:
    from pupper_ros.ros.telemetry import odometry_message
    from pupper_ros.robot_profile import load_robot_profile

    parser = argparse.ArgumentParser(prog="python -m tests.ros2_control_standin", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--joints-override", default="{}", help="JSON: controller name -> its 'joints' parameter value")
    parser.add_argument("--states", default="{}", help="JSON: controller name -> its state at start")
    args = parser.parse_args(argv)
    try:  # controller_manager runs at real-time priority on the robot; here a higher scheduling priority stands in
        os.nice(-10)
    except PermissionError:
        pass
    robot = Ros2ControlStandIn(load_robot_profile(), joints_override=json.loads(args.joints_override),
                               states=json.loads(args.states)).start()
    odom_node = rclpy.create_node("standin_ground_truth", context=robot.context)
    odom_pub = odom_node.create_publisher(Odometry, "/standin/odom", 10)

    def publish_truth():
        state = robot.ground_truth()
        odom_pub.publish(odometry_message(odom_node.get_clock().now().to_msg(), robot.profile.base_link,
                                          state.base_position, state.base_orientation,
                                          state.base_linear_velocity, state.base_angular_velocity))

    odom_node.create_timer(0.02, publish_truth)
    robot._executor.add_node(odom_node)
    while robot.published == 0:
        time.sleep(0.01)
    print("ready", flush=True)
    try:
        for line in sys.stdin:
            words = line.split()
            if words == ["silent"]:
                robot.go_silent()
            elif len(words) == 3 and words[0] == "state":
                robot.set_state(words[1], words[2])
    except KeyboardInterrupt:
        pass
    robot.stop()
    return 0


class StandInProcess:
    """The stand-in in a process of its own: ``with StandInProcess() as standin: ...``."""

    def __init__(self, joints_override: dict | None = None, states: dict | None = None):
        self.args = [sys.executable, "-m", "tests.ros2_control_standin", "--joints-override", json.dumps(joints_override or {}),
                     "--states", json.dumps(states or {})]
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> "StandInProcess":
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        self.proc = subprocess.Popen(self.args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=root)
        line = self.proc.stdout.readline()
        if line.strip() != "ready":
            self.__exit__()
            raise RuntimeError(f"the ros2_control stand-in did not start: {line!r}")
        return self

    def go_silent(self) -> None:
        self.proc.stdin.write("silent\n")
        self.proc.stdin.flush()

    def set_state(self, name: str, state: str) -> None:
        self.proc.stdin.write(f"state {name} {state}\n")
        self.proc.stdin.flush()

    def __exit__(self, *exc) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


if __name__ == "__main__":
    raise SystemExit(main())
