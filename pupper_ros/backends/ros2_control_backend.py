"""A robot under ros2_control (Pupper v3's own stack, its MuJoCo simulation, any ros2_control robot): sensors from
joint_state_broadcaster and imu_sensor_broadcaster, commands to three forward_command_controllers (position, kp, kd).

The backend owns a ROS node of its own, spun in its own thread, so the broadcasters' 260 Hz streams never wait on
the daemon's executor and the configure-time parameter queries work whether configure runs standalone or under
launch. Each controller's joint order is read from its ``joints`` parameter over the parameter service, never
assumed; joint states are mapped by name. A sample's age counts from its arrival, so the supervisor's sensor
timeout works as with the other backends. Malformed messages are dropped and counted, with the reason in
/diagnostics; a profile joint missing from /joint_states stops the samples, so the sensor timeout latches DAMPING.

The controllers are checked, not assumed: through controller_manager's ``list_controllers`` and each controller's
``joints`` parameter, at open (configure), in ``verify`` (activate and ``~/clear_fault``) and every
``CONTROLLER_CHECK_PERIOD`` while open. A controller that is not active, or whose joints changed, makes every
``write`` raise after publishing (so the supervisor latches DAMPING naming it, and damping still reaches the
controllers that listen). ``activate_controllers`` switches with STRICT strictness; an ``open`` that fails after
switching puts the switch back, as does ``abandon`` (a configure that failed after ``open``).
This stack has no command watchdog: ``close`` publishes damping (kp 0) and waits up to ``CLOSE_ACK_TIMEOUT`` for the
controllers to acknowledge it, reporting in ``stop_report`` whether they did.
"""

from __future__ import annotations

import collections
import math
import threading
import time

import numpy as np
import rclpy
from rcl_interfaces.msg import ParameterType
from rcl_interfaces.srv import GetParameters
from rclpy.duration import Duration
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import Imu, JointState
from std_msgs.msg import Float64MultiArray

from pupper_ros.backends.backend import Backend, BackendError
from pupper_ros.robot_profile import RobotProfile
from pupper_ros.backends.io import JointCommand, SensorSample

NEURAL_CONTROLLER = "neural_controller"  # the robot's own policy, which must not drive the joints at the same time
FUTURE_STAMP_TOLERANCE_S = 0.5  # a message stamped further ahead than this is from a wrong clock
CONTROLLER_CHECK_PERIOD = 0.5  # s between checks of the controllers while the backend is open
CLOSE_ACK_TIMEOUT = 0.5  # s close waits, in all, for the controllers to acknowledge damping
ARRIVALS_KEPT = 2000  # arrival times kept per stream for ``message_times`` (several seconds at 260 Hz)


def controller_manager_services():
    """controller_manager_msgs' services; without them the controllers cannot be checked, so the backend refuses."""
    try:
        from controller_manager_msgs.srv import ListControllers, SwitchController
    except ImportError:
        raise BackendError("controller_manager_msgs is not installed here, so the ros2_control backend cannot confirm "
                           "that its controllers are active (it comes with ros2_control: source your ROS 2 setup "
                           "first)") from None
    return ListControllers, SwitchController


def switch_command(controllers: list[str]) -> str:
    return (f"ros2 control switch_controllers --activate {' '.join(controllers)} --deactivate {NEURAL_CONTROLLER}")


class Ros2ControlBackend(Backend):
    publishes_sensors = False

    def __init__(self, profile: RobotProfile, control_period: float, *, context=None,
                 joint_states_topic: str = "/joint_states", imu_topic: str = "/imu_sensor_broadcaster/imu",
                 position_controller: str = "forward_position_controller", kp_controller: str = "forward_kp_controller",
                 kd_controller: str = "forward_kd_controller", activate_controllers: bool = False,
                 damping_kd: float = 0.1, timeout: float = 5.0):
        self.profile = profile
        self.context = context
        self.joint_states_topic = joint_states_topic
        self.imu_topic = imu_topic
        self.controllers = {"position": position_controller, "kp": kp_controller, "kd": kd_controller}
        self.activate_controllers = activate_controllers
        self.damping_kd = min(damping_kd, profile.kd_max)
        self.timeout = timeout
        n = profile.num_joints
        self._index = {name: i for i, name in enumerate(profile.joints)}
        self._lock = threading.Lock()
        self._joints_at = self._imu_at = -math.inf  # arrival times (time.monotonic) of the newest valid messages
        self._sample, self._out = SensorSample.zeros(n), SensorSample.zeros(n)
        self.dropped: dict[str, int] = {"joint_states": 0, "imu": 0}
        self.drop_reason: dict[str, str] = {"joint_states": "", "imu": ""}
        self._dropped_at: dict[str, float] = {"joint_states": -math.inf, "imu": -math.inf}
        self._arrivals = {stream: collections.deque(maxlen=ARRIVALS_KEPT) for stream in ("joint_states", "imu")}
        self.node = None
        self._executor = None
        self._spinner: threading.Thread | None = None
        self._orders: dict[str, np.ndarray] = {}  # role -> profile index of each slot in the controller's order
        self._publishers = {}
        self._messages = {}
        self._clients = {}
        self._switched = False  # whether open switched the controllers (and so a failed configure switches back)
        self._controller_problem = ""  # the newest check's finding; "" while all three are active and unchanged
        self._check_lock = threading.Lock()
        self._checker: threading.Thread | None = None
        self._closing = threading.Event()
        self.stop_report = ""

    @classmethod
    def from_parameters(cls, profile, control_period, values, context=None) -> "Ros2ControlBackend":
        return cls(profile, control_period, context=context, damping_kd=values["damping_kd"],
                   activate_controllers=values["activate_controllers"], timeout=values["controller_manager_timeout"],
                   **{name: values[name] for name in ("joint_states_topic", "imu_topic", "position_controller",
                                                      "kp_controller", "kd_controller")})

    # --- configure ---------------------------------------------------------------------------------------------
    def open(self) -> None:
        _, switch_type = controller_manager_services()
        try:
            self._start_node()
            reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
            for role, controller in self.controllers.items():
                self._orders[role] = self._controller_order(role)
                self._publishers[role] = self.node.create_publisher(Float64MultiArray, f"/{controller}/commands", reliable)
                self._messages[role] = Float64MultiArray()
            if self.activate_controllers:
                self._switch_controllers(switch_type)
            problem = self._check_controllers()
            if problem:
                hint = "" if self.activate_controllers else f" (activate them: {switch_command(list(self.controllers.values()))})"
                raise BackendError(problem + hint)
            self._listen()
            self._wait_for_first_messages()
            self._checker = threading.Thread(target=self._check_periodically, name="ros2_control_check", daemon=True)
            self._checker.start()
        except BaseException:
            self._switch_back()
            self._shutdown_node()
            raise

    def observe(self) -> None:
        """Open for reading only (``pupper-preflight``): the sensor streams and controller_manager's answers, with no
        publisher, no switch and no requirement on the controllers' states; ``write`` refuses."""
        try:
            self._start_node()
            self._listen()
        except BaseException:
            self._shutdown_node()
            raise

    def _start_node(self) -> None:
        list_type, switch_type = controller_manager_services()
        context = self.context if self.context is not None else rclpy.get_default_context()
        self.node = rclpy.create_node("pupper_walk_ros2_control", context=context)
        self._executor = SingleThreadedExecutor(context=context)
        self._executor.add_node(self.node)
        self._closing.clear()
        self._clients["list"] = self.node.create_client(list_type, "/controller_manager/list_controllers")
        self._clients["switch"] = self.node.create_client(switch_type, "/controller_manager/switch_controller")
        for role, controller in self.controllers.items():
            self._clients[role] = self.node.create_client(GetParameters, f"/{controller}/get_parameters")

    def _listen(self) -> None:
        self.node.create_subscription(JointState, self.joint_states_topic, self._on_joint_states, qos_profile_sensor_data)
        self.node.create_subscription(Imu, self.imu_topic, self._on_imu, qos_profile_sensor_data)
        self._spinner = threading.Thread(target=self._spin, name="ros2_control_backend", daemon=True)
        self._spinner.start()

    def _call(self, client, request, what: str):
        if not client.wait_for_service(timeout_sec=self.timeout):
            raise BackendError(f"{what}: no answer within {self.timeout:g} s (is controller_manager running and the "
                               "controller loaded?)")
        future = client.call_async(request)
        deadline = time.monotonic() + self.timeout
        if self._spinner is None:  # configure: this thread spins the backend's node itself
            while not future.done() and time.monotonic() < deadline:
                self._executor.spin_once(timeout_sec=0.05)
        else:  # the spinner thread delivers the answer
            answered = threading.Event()
            future.add_done_callback(lambda _: answered.set())
            answered.wait(self.timeout)
        if not future.done():
            raise BackendError(f"{what}: no answer within {self.timeout:g} s")
        return future.result()

    def _controller_order(self, role: str) -> np.ndarray:
        controller = self.controllers[role]
        what = f"controller '{controller}': reading its 'joints' parameter"
        response = self._call(self._clients[role], GetParameters.Request(names=["joints"]), what)
        value = response.values[0] if response.values else None
        if value is None or value.type == ParameterType.PARAMETER_NOT_SET:
            raise BackendError(f"controller '{controller}' has no 'joints' parameter")
        if value.type != ParameterType.PARAMETER_STRING_ARRAY:
            raise BackendError(f"controller '{controller}': parameter 'joints' is of type {value.type}, "
                               "expected a string array")
        joints = list(value.string_array_value)
        missing = [j for j in self.profile.joints if j not in joints]
        if missing:
            raise BackendError(f"controller '{controller}' lacks profile joint(s) {', '.join(missing)}")
        unknown = [j for j in joints if j not in self._index]
        if unknown or len(joints) != len(set(joints)):
            raise BackendError(f"controller '{controller}' commands joint(s) this profile does not have or lists one "
                               f"twice: {', '.join(unknown) or joints}")
        return np.array([self._index[j] for j in joints])

    def _controller_states(self) -> dict[str, str]:
        list_type, _ = controller_manager_services()
        response = self._call(self._clients["list"], list_type.Request(), "/controller_manager/list_controllers")
        return {c.name: c.state for c in response.controller}

    def _check_controllers(self) -> str:
        """What is wrong with the three forward controllers right now ("" when all are active with the joints read
        at open); also kept for ``write`` and ``problem``."""
        with self._check_lock:
            try:
                states = self._controller_states()
                problem = ""
                for role, controller in self.controllers.items():
                    state = states.get(controller)
                    if state is None:
                        problem = f"controller '{controller}' is not loaded in controller_manager"
                    elif state != "active":
                        problem = f"controller '{controller}' is {state}, not active"
                    elif not np.array_equal(self._controller_order(role), self._orders[role]):
                        problem = f"controller '{controller}' changed its 'joints' since configure"
                    if problem:
                        break
            except BackendError as exc:
                problem = f"cannot check the controllers: {exc}"
            self._controller_problem = problem
            return problem

    def _check_periodically(self) -> None:
        while not self._closing.wait(CONTROLLER_CHECK_PERIOD):
            try:
                self._check_controllers()
            except Exception:  # noqa: BLE001 - the node went away under a check: the backend is closing
                return

    def _switch(self, activate: list[str], deactivate: list[str], strict: bool = True):
        _, switch_type = controller_manager_services()
        strictness = switch_type.Request.STRICT if strict else switch_type.Request.BEST_EFFORT
        request = switch_type.Request(activate_controllers=activate, deactivate_controllers=deactivate, strictness=strictness)
        return self._call(self._clients["switch"], request, "/controller_manager/switch_controller")

    def _switch_controllers(self, switch_type) -> None:
        wanted = list(self.controllers.values())
        states = self._controller_states()
        activate = [c for c in wanted if states.get(c) != "active"]
        deactivate = [NEURAL_CONTROLLER] if states.get(NEURAL_CONTROLLER) == "active" else []
        if not activate and not deactivate:
            return
        response = self._switch(activate, deactivate)
        if not response.ok:
            raise BackendError(f"controller_manager refused to switch controllers ({response.message or 'no reason given'}); "
                               f"try: {switch_command(wanted)}")
        self._switched_to = (activate, deactivate)
        self._switched = True

    def _switch_back(self) -> None:
        """Undo open's switch (a configure that failed); best effort, since the switch is being given up."""
        if not self._switched or self.node is None:
            return
        activated, deactivated = self._switched_to
        self._switched = False
        try:
            self._switch(deactivated, activated, strict=False)
        except BackendError:
            pass

    def _wait_for_first_messages(self) -> None:
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            with self._lock:
                if self._joints_at > -math.inf and self._imu_at > -math.inf:
                    return
            time.sleep(0.01)
        with self._lock:
            missing = [topic for topic, at in ((self.joint_states_topic, self._joints_at), (self.imu_topic, self._imu_at))
                       if at == -math.inf]
        reasons = [r for r in self.drop_reason.values() if r]
        raise BackendError(f"no valid message on {' and '.join(missing)} within {self.timeout:g} s (are "
                           "joint_state_broadcaster and imu_sensor_broadcaster active?)"
                           + (f"; dropped: {'; '.join(reasons)}" if reasons else ""))

    def _spin(self) -> None:
        executor = self._executor
        while self.node is not None and executor is not None and self.context_ok():
            try:
                executor.spin_once(timeout_sec=0.05)
            except Exception:  # noqa: BLE001 - the context is shutting down
                return

    def context_ok(self) -> bool:
        return self.node is not None and self.node.context.ok()

    # --- sensors (the spinner thread) --------------------------------------------------------------------------
    def _drop(self, stream: str, reason: str) -> None:
        with self._lock:
            self.dropped[stream] += 1
            self.drop_reason[stream] = reason
            self._dropped_at[stream] = time.monotonic()

    def _stamp_in_future(self, header) -> bool:
        stamp = header.stamp.sec + header.stamp.nanosec * 1e-9
        return stamp > 0 and stamp - self.node.get_clock().now().nanoseconds * 1e-9 > FUTURE_STAMP_TOLERANCE_S

    def _on_joint_states(self, msg: JointState) -> None:
        arrival = time.monotonic()
        names, position, velocity = msg.name, msg.position, msg.velocity
        if len(position) != len(names) or len(velocity) != len(names):
            self._drop("joint_states", f"{len(names)} names but {len(position)} positions and {len(velocity)} velocities")
            return
        if self._stamp_in_future(msg.header):
            self._drop("joint_states", "stamp in the future")
            return
        slot = {name: k for k, name in enumerate(names)}
        if len(slot) != len(names):
            twice = sorted({name for name in names if names.count(name) > 1})
            self._drop("joint_states", f"joint(s) listed twice: {', '.join(twice)}")
            return
        missing = [j for j in self.profile.joints if j not in slot]
        if missing:
            self._drop("joint_states", f"missing profile joint(s) {', '.join(missing)}")
            return
        order = [slot[j] for j in self.profile.joints]
        q, qd = np.asarray(position)[order], np.asarray(velocity)[order]
        if not (np.all(np.isfinite(q)) and np.all(np.isfinite(qd))):
            self._drop("joint_states", "non-finite position or velocity")
            return
        with self._lock:
            self._sample.joint_position[:] = q
            self._sample.joint_velocity[:] = qd
            self._joints_at = arrival
            self._arrivals["joint_states"].append(arrival)

    def _on_imu(self, msg: Imu) -> None:
        arrival = time.monotonic()
        o, w = msg.orientation, msg.angular_velocity
        quaternion = np.array([o.x, o.y, o.z, o.w])
        rates = np.array([w.x, w.y, w.z])
        if not (np.all(np.isfinite(quaternion)) and np.all(np.isfinite(rates))):
            self._drop("imu", "non-finite orientation or angular velocity")
            return
        norm = float(np.linalg.norm(quaternion))
        if abs(norm - 1.0) > 0.01:
            self._drop("imu", f"orientation is not a unit quaternion (norm {norm:.3f})")
            return
        if self._stamp_in_future(msg.header):
            self._drop("imu", "stamp in the future")
            return
        a = msg.linear_acceleration  # this robot's accelerometer is off: zeros are passed on as measured
        with self._lock:
            self._sample.orientation[:] = quaternion / norm
            self._sample.angular_velocity[:] = rates
            self._sample.linear_acceleration[:] = (a.x, a.y, a.z)
            self._imu_at = arrival
            self._arrivals["imu"].append(arrival)

    # --- backend interface -------------------------------------------------------------------------------------
    def latest_sample(self, now: float) -> SensorSample | None:
        with self._lock:
            if self._joints_at == -math.inf or self._imu_at == -math.inf:
                return None
            out = self._out
            out.copy_from(self._sample)
            out.stamp = min(self._joints_at, self._imu_at)  # the older stream decides how stale the sample is
            return out

    def write(self, command: JointCommand, now: float) -> None:
        if self.node is None or not self._publishers:
            raise BackendError("ros2_control backend is not open for commands")
        for role, values in (("position", command.position), ("kp", command.kp), ("kd", command.kd)):
            message = self._messages[role]
            message.data = values[self._orders[role]].tolist()
            self._publishers[role].publish(message)
        problem = self._controller_problem
        if problem:  # published all the same: damping must reach whichever controllers still listen
            raise BackendError(problem)

    def problem(self) -> str:
        """A stream whose newest message was dropped (a fault is not cleared on bad data), or the newest controller
        check's finding."""
        with self._lock:
            valid = {"joint_states": self._joints_at, "imu": self._imu_at}
            reasons = [f"{stream}: {self.drop_reason[stream]}" for stream in valid if self._dropped_at[stream] > valid[stream]]
        if self._controller_problem:
            reasons.append(self._controller_problem)
        return "; ".join(reasons)

    def verify(self) -> str:
        """Check the controllers now (activate, ``~/clear_fault``), then report as ``problem``."""
        self._check_controllers()
        return self.problem()

    def message_times(self) -> dict[str, list[float]]:
        with self._lock:
            return {stream: list(times) for stream, times in self._arrivals.items()}

    def drop_reasons(self) -> dict[str, str]:
        """Per stream, why its newest dropped message was dropped ("" when none was)."""
        with self._lock:
            return dict(self.drop_reason)

    def controller_report(self) -> dict[str, tuple[str, str]]:
        """Each forward controller (and neural_controller) -> (its state in controller_manager, what is wrong with
        its ``joints`` parameter or ""), asked now; never raises. The state is "not loaded" for a controller
        controller_manager does not list, and "unknown" when controller_manager does not answer."""
        try:
            states = self._controller_states()
            unanswered = ""
        except BackendError as exc:
            states, unanswered = {}, str(exc)
        report = {}
        for role, controller in self.controllers.items():
            state = states.get(controller, "unknown" if unanswered else "not loaded")
            try:
                self._controller_order(role)
                joints = ""
            except BackendError as exc:
                joints = str(exc)
            report[controller] = (state, unanswered or joints)
        report[NEURAL_CONTROLLER] = (states.get(NEURAL_CONTROLLER, "unknown" if unanswered else "not loaded"), "")
        return report

    def diagnostics(self) -> dict[str, str]:
        with self._lock:
            return {
                "ros2_control joint_states dropped": f"{self.dropped['joint_states']} ({self.drop_reason['joint_states'] or 'none'})",
                "ros2_control imu dropped": f"{self.dropped['imu']} ({self.drop_reason['imu'] or 'none'})",
                "ros2_control controllers": ", ".join(self.controllers.values()),
                "ros2_control controller check": self._controller_problem or "all active, joints unchanged",
            }

    def close(self) -> None:
        if self.node is None:
            return
        self._closing.set()
        if not self._publishers:  # opened with ``observe``
            self.stop_report = "opened read-only: nothing was sent"
            self._shutdown_node()
            return
        sample = self.latest_sample(time.monotonic())
        damping = JointCommand(self.profile.num_joints)
        damping.position[:] = sample.joint_position if sample is not None else self.profile.default_pose
        damping.kd[:] = self.damping_kd
        try:
            self.write(damping, time.monotonic())
        except BackendError:  # a controller problem: published all the same
            pass
        except Exception as exc:  # noqa: BLE001 - a context already shut down: nothing more can be sent
            self.stop_report = f"damping could not be sent: {exc}"
        if not self.stop_report:
            self.stop_report = self._wait_for_acknowledgement()
        self._shutdown_node()

    def abandon(self) -> None:
        """A configure that failed after ``open``: damping, the controller switch put back, closed."""
        self._closing.set()
        self._switch_back()
        self.close()

    def _wait_for_acknowledgement(self) -> str:
        """The forward controllers hold the last command forever: say whether they all acknowledged damping."""
        deadline = time.monotonic() + CLOSE_ACK_TIMEOUT
        silent = []
        for role, publisher in self._publishers.items():
            remaining = max(0.0, deadline - time.monotonic())
            try:
                acked = publisher.wait_for_all_acked(Duration(nanoseconds=int(remaining * 1e9)))
            except Exception:  # noqa: BLE001 - the context is going away
                acked = False
            if not acked or publisher.get_subscription_count() == 0:
                silent.append(self.controllers[role])
        if silent:
            return (f"damping sent; not acknowledged within {CLOSE_ACK_TIMEOUT:g} s by {', '.join(silent)}: check that "
                    "the robot is limp")
        return "damping acknowledged by all three forward controllers"

    def _shutdown_node(self) -> None:
        node, executor, spinner = self.node, self._executor, self._spinner
        self._closing.set()
        self.node = None
        if self._checker is not None:  # a check in flight must not hold up the stop; it ends with the node
            self._checker.join(timeout=0.2)
        if spinner is not None:
            spinner.join(timeout=1.0)
        if executor is not None:
            executor.remove_node(node)
            executor.shutdown(timeout_sec=0.5)
        if node is not None:
            node.destroy_node()
        self._executor = self._spinner = self._checker = None
        self._publishers, self._clients = {}, {}
