"""The ROS 2 shell of the walking daemon: the managed node ``pupper_walk``.

Lifecycle: configure loads and validates the profile, the policy and the parameters and opens the backend;
activate starts the control loop and the stand-up; deactivate and shutdown leave the robot in DAMPING.
ROS callbacks only hand values to the controller (under its short lock) and publish snapshots that the control
thread leaves behind; they never wait on the loop.
"""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path

from geometry_msgs.msg import Twist, TwistStamped
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType, SetParametersResult
from rcl_interfaces.srv import SetParameters
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import QoSProfile, ReliabilityPolicy
from std_msgs.msg import Empty, String
from std_srvs.srv import Trigger

from pupper_ros import resources
from pupper_ros.control_loop import ControlLoop
from pupper_ros.controller import Controller
from pupper_ros.assembly import assemble
from pupper_ros.parameters import FIRST_POLICY, NODE_NAME, PARAMETERS, ParameterError, policy_entries
from pupper_ros.policy import PolicyLoadError, load_policy
from pupper_ros.robot_profile import ProfileError, load_robot_profile
from pupper_ros.ros.interfaces import state_qos
from pupper_ros.ros.telemetry import TelemetryPublisher
from pupper_ros.safety import State

DEACTIVATED, SHUT_DOWN = "deactivated", "shut down"
ORDERLY_STOPS = (DEACTIVATED, SHUT_DOWN)  # asked for by the operator: logged as information, not as a fault
FIRST_SAMPLE_TIMEOUT = 2.0  # s activation waits for a just-opened link's first healthy reading before refusing
STOP_LOCK_TIMEOUT = 0.2  # s a stop waits for the control thread's locks before writing damping regardless


TWIST_TYPES = {False: "geometry_msgs/msg/Twist", True: "geometry_msgs/msg/TwistStamped"}


class ConfigurationError(ValueError):
    """A parameter, profile or policy that cannot be used; the message names it."""


class WalkNode(LifecycleNode):
    def __init__(self, stop_requested: threading.Event | None = None, **kwargs):
        """``stop_requested``: set by the process's signal handlers; once set, no activation stands the robot up."""
        super().__init__(NODE_NAME, **kwargs)
        self.stop_requested = stop_requested or threading.Event()
        for p in PARAMETERS:
            descriptor = ParameterDescriptor(description=p.description)
            if p.low is not None and isinstance(p.default, float):
                descriptor.floating_point_range = [FloatingPointRange(from_value=float(p.low), to_value=float(p.high), step=0.0)]
            elif p.low is not None and isinstance(p.default, int) and not isinstance(p.default, bool):
                descriptor.integer_range = [IntegerRange(from_value=int(p.low), to_value=int(p.high), step=1)]
            if p.choices:
                descriptor.additional_constraints = f"one of: {', '.join(p.choices)}"
            self.declare_parameter(p.name, p.default, descriptor)

        self.controller: Controller | None = None
        self.recorder = None  # FlightRecorder when parameter record_log names a file
        self.loop: ControlLoop | None = None
        self.publisher: TelemetryPublisher | None = None  # telemetry and /diagnostics while configured
        self.configure_error = ""
        self.latched_fault = ""  # a fault or e-stop latched before configure or across cleanup; clear_fault releases it
        self._last_state_published = None
        self._warned_types: set[str] = set()
        self._command_stamp = -math.inf
        # not `_timers`: that is rclpy Node's own list, which destroy_timer edits
        self._runtime_timers = []

        self.state_pub = self.create_publisher(String, "~/state", state_qos())
        self.create_subscription(Empty, "/emergency_stop", self._on_emergency_stop, QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
        self.create_service(Trigger, "~/clear_fault", self._on_clear_fault)
        self.create_service(SetParameters, "~/select_policy", self._on_select_policy)
        self.policies: dict = {}  # name -> OnnxPolicy, loaded at configure; FIRST_POLICY is the 'policy' parameter's
        self.active_policy = ""
        self._publish_state(State.INACTIVE.value)

    # --- lifecycle ----------------------------------------------------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self._configure()
        except ConfigurationError as exc:
            self.configure_error = str(exc)
            self.get_logger().error(f"configure failed: {exc}")
            self._teardown()
            return TransitionCallbackReturn.FAILURE
        self.get_logger().info(
            f"configured: robot {self.profile.name}, backend {self.get_parameter('backend').value}, policy {self.policy.info.path}, "
            f"control {1.0 / self.loop.period:.0f} Hz (policy every {self.controller.ticks_per_policy_step} ticks)"
        )
        return TransitionCallbackReturn.SUCCESS

    def _param(self, name):
        return self.get_parameter(name).value

    def _param_values(self) -> dict:
        return {p.name: self._param(p.name) for p in PARAMETERS}

    def _configure(self) -> None:
        values = self._param_values()
        try:
            self.profile = profile = load_robot_profile(values["robot"])
        except ProfileError as exc:
            raise ConfigurationError(f"parameter 'robot': {exc}") from exc
        policy_path = values["policy"] or str(resources.default_policy_path(profile.name))
        try:
            self.policy = policy = load_policy(Path(policy_path).expanduser(), profile)
        except PolicyLoadError as exc:
            raise ConfigurationError(f"parameter 'policy': {exc}") from exc
        self.policies, self.active_policy = {FIRST_POLICY: policy}, FIRST_POLICY
        try:
            entries = policy_entries(values["policies"])
        except ValueError as exc:
            raise ConfigurationError(f"parameter 'policies': {exc}") from exc
        for name, path in entries:
            try:
                other = load_policy(Path(path).expanduser(), profile)
            except PolicyLoadError as exc:
                raise ConfigurationError(f"parameter 'policies': '{name}': {exc}") from exc
            if other.contract != policy.contract:
                raise ConfigurationError(f"parameter 'policies': '{name}' ({path}) was made for another policy contract "
                                         "than the 'policy' parameter's; one daemon runs one contract")
            self.policies[name] = other

        try:
            runtime = assemble(profile, policy, values, context=self.context, on_tick=self._on_tick)
        except ParameterError as exc:
            raise ConfigurationError(str(exc)) from exc
        except Exception as exc:  # the backend did not open
            raise ConfigurationError(f"backend '{values['backend']}' failed to open: {exc}") from exc
        if self.latched_fault:  # a new supervisor does not forget a latch: only ~/clear_fault releases it
            runtime.supervisor.fault(self.latched_fault)
        backend = self.backend = runtime.backend
        try:
            self.recorder = self._open_recorder(values["backend"])
        except ConfigurationError:
            backend.abandon()  # puts back what open changed on the robot (a controller switch)
            raise
        self.controller, self.loop = runtime.controller, runtime.loop
        self.publisher = TelemetryPublisher(self, profile, backend)
        stamped = self._param("stamped_cmd_vel")
        self._cmd_type = TWIST_TYPES[stamped]
        self.cmd_sub = self.create_subscription(TwistStamped if stamped else Twist, "/cmd_vel", self._on_cmd_vel,
                                                QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
        self._runtime_timers = [
            self.create_timer(1.0 / self._param("publish_rate"), self._publish_telemetry),
            self.create_timer(1.0, self._publish_diagnostics),
        ]

    def _open_recorder(self, backend_name: str):
        path = self._param("record_log")
        if not path:
            return None
        from pupper_ros.flight_log.recorder import FlightRecorder, RecorderError

        # A robot's log in ROS time (the loop runs on the monotonic clock); a simulated log keeps simulation time.
        offset_ns = 0 if backend_name == "sim" else self.get_clock().now().nanoseconds - time.monotonic_ns()
        try:
            return FlightRecorder(path, self.profile, self.policy, self._param_values(), backend_name,
                                  wait_when_full=self.backend.lockstep, clock_offset_ns=offset_ns)
        except RecorderError as exc:
            raise ConfigurationError(f"parameter 'record_log': {exc}") from exc

    def _on_tick(self, now: float, controller: Controller) -> None:
        self.publisher.telemetry.capture(now, controller)
        if self.recorder is not None:
            self.recorder.record_tick(now, controller)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        if self.controller is None:
            return TransitionCallbackReturn.FAILURE
        if self.stop_requested.is_set():
            self.get_logger().warning("activate refused: the daemon is stopping")
            return TransitionCallbackReturn.FAILURE
        self.controller.wait_for_sensors(self.loop.now, FIRST_SAMPLE_TIMEOUT)
        if not self.controller.activate(self.loop.now()):
            self.get_logger().error(f"activate refused: {self.controller.supervisor.fault_reason}")
        if not self.loop.running:
            self.loop.start()
        self.get_logger().info("active: standing up")
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_in_damping(DEACTIVATED)
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._teardown()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._teardown()
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._teardown()
        return TransitionCallbackReturn.SUCCESS

    def _stop_in_damping(self, reason: str) -> None:
        """Stop the loop, then send one damping command from this thread. Bounded: a control thread that hangs
        holding the controller's locks cannot keep the stop from finishing (the backend's close damps again)."""
        if self.controller is None:
            return
        self.controller.deactivate(reason, lock_timeout=STOP_LOCK_TIMEOUT)
        if self.loop is not None:
            self.loop.stop()
        try:
            now = self.loop.now() if self.loop is not None else 0.0
            if not self.controller.damp(reason, now, lock_timeout=STOP_LOCK_TIMEOUT):
                self.get_logger().warning("final damping command not written (the backend's close damps again)")
            if self.recorder is not None:
                self.recorder.record_tick(now, self.controller)
        except Exception as exc:  # the link may already be gone; closing the backend damps it again
            self.get_logger().warning(f"final damping command failed: {exc}")
        self._publish_state(State.DAMPING.value)

    def _teardown(self) -> None:
        if self.controller is not None:
            self._stop_in_damping(SHUT_DOWN)
            self.latched_fault = self.controller.supervisor.latched_fault
            backend = self.controller.backend
            backend.close()
            if backend.stop_report:
                self.get_logger().info(f"stopped: {backend.stop_report}")
        if self.recorder is not None:
            self.recorder.close()
            self.get_logger().info(f"flight log {self.recorder.path}: {self.recorder.written} records, "
                                   f"{self.recorder.dropped} dropped")
            self.recorder = None
        for timer in self._runtime_timers:
            self.destroy_timer(timer)
        if self.publisher is not None:
            self.publisher.destroy()
            self.publisher = None
        if getattr(self, "cmd_sub", None) is not None:
            self.destroy_subscription(self.cmd_sub)
            self.cmd_sub = None
        self._runtime_timers = []
        self.controller = self.loop = None

    def shutdown_safely(self) -> None:
        """Signal path: damping out, backend closed; callable once from the main thread."""
        self._teardown()

    def destroy_node(self) -> None:
        """Whoever destroys the node stops the robot first (damping out, backend closed): an active node destroyed
        without a shutdown transition would otherwise leave its control thread commanding the robot. A node whose
        constructor failed (rclpy destroys it then) has nothing to stop."""
        if hasattr(self, "publisher"):  # set with the rest of the runtime's fields once the parameters are declared
            self._teardown()
        super().destroy_node()

    # --- inputs -------------------------------------------------------------------------------------------------
    def _on_cmd_vel(self, msg) -> None:
        controller, loop = self.controller, self.loop
        if controller is None:
            return
        twist = msg.twist if isinstance(msg, TwistStamped) else msg
        if self.recorder is not None:
            self.recorder.record_cmd_vel(loop.now(), (twist.linear.x, twist.linear.y, twist.linear.z),
                                         (twist.angular.x, twist.angular.y, twist.angular.z))
        if isinstance(msg, TwistStamped):
            stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
            age = self.get_clock().now().nanoseconds * 1e-9 - stamp
            if stamp > 0 and age > self._param("command_timeout"):
                with controller.lock:
                    controller.supervisor.commands_rejected += 1
                return
        controller.set_command((twist.linear.x, twist.linear.y, twist.angular.z), loop.now())
        self._command_stamp = loop.now()

    def _on_emergency_stop(self, _msg) -> None:
        controller = self.controller
        if controller is not None:
            controller.emergency_stop()
        elif not self.latched_fault:
            self.latched_fault = "emergency stop"  # held until configure hands it to the supervisor
        self.get_logger().warning("emergency stop: DAMPING (call ~/clear_fault to stand up again)")

    def _on_select_policy(self, request, response):
        """``~/select_policy`` (rcl_interfaces/srv/SetParameters): one parameter named ``policy`` whose string value
        names a loaded policy. SetParameters because std_srvs has no request with a string, and a custom service
        needs an interface package a pip install cannot build; this is the shape ``ros2 param set`` already speaks,
        and its reply carries the reason for a refusal."""
        ok, reason = self._select_policy(request.parameters)
        if ok:
            self.get_logger().info(f"policy '{self.active_policy}': {reason}")
        else:
            self.get_logger().warning(f"select_policy refused: {reason}")
        response.results = [SetParametersResult(successful=ok, reason=reason)]
        return response

    def _select_policy(self, parameters) -> tuple[bool, str]:
        if len(parameters) != 1 or parameters[0].name != "policy" or \
                parameters[0].value.type != ParameterType.PARAMETER_STRING:
            return False, "the request must hold one string parameter named 'policy'"
        name = parameters[0].value.string_value
        if self.controller is None:
            return False, "the node is not configured"
        if name not in self.policies:
            return False, f"no policy '{name}'; loaded: {', '.join(self.policies)}"
        if name == self.active_policy:
            return True, "already running"
        ok, reason = self.controller.select_policy(self.policies[name])
        if ok:
            self.active_policy = name
        return ok, reason

    def _on_clear_fault(self, _request, response):
        if self.controller is None or self.loop is None or not self.loop.running:
            response.success, response.message = False, "node is not active"
            return response
        response.success, response.message = self.controller.clear_fault(self.loop.now())
        self.get_logger().info(f"clear_fault: {response.message}")
        return response

    # --- outputs ------------------------------------------------------------------------------------------------
    def _publish_state(self, value: str) -> None:
        if value != self._last_state_published:
            self.state_pub.publish(String(data=value))
            self._last_state_published = value
            reason = self.controller.supervisor.fault_reason if self.controller is not None else ""
            if value == State.DAMPING.value and reason in ORDERLY_STOPS:
                self.get_logger().info(f"DAMPING: {reason}")
            elif value == State.DAMPING.value and reason:
                self.get_logger().error(f"DAMPING: {reason} (call ~/clear_fault to stand up again)")
            else:
                self.get_logger().info(f"state {value}")

    def _publish_telemetry(self) -> None:
        controller, publisher = self.controller, self.publisher
        if controller is None or publisher is None:
            return
        self._publish_state(controller.state.value)
        publisher.publish_telemetry()

    def _cmd_vel_type_problem(self) -> str:
        others = [i for i in self.get_publishers_info_by_topic("/cmd_vel") if i.topic_type != self._cmd_type]
        if not others:
            return ""
        kinds = sorted({i.topic_type for i in others})
        message = (f"/cmd_vel has publisher(s) of type {', '.join(kinds)} but this node subscribes {self._cmd_type}; "
                   f"their commands are ignored (set parameter stamped_cmd_vel to match)")
        key = ",".join(kinds)
        if key not in self._warned_types:
            self._warned_types.add(key)
            self.get_logger().warning(message)
        return message

    def _publish_diagnostics(self) -> None:
        controller, loop, publisher = self.controller, self.loop, self.publisher
        if controller is None or publisher is None:
            return
        publisher.publish_diagnostics(controller, loop, policy_name=self.active_policy,
                                      command_age=loop.now() - self._command_stamp,
                                      cmd_vel_problem=self._cmd_vel_type_problem(), cmd_vel_type=self._cmd_type,
                                      recorder=self.recorder)
