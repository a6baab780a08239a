"""Runtime timing, measured side by side in one run on this machine:

  one control step without a simulator (observation, inference, safety, command) p50/p99, beside a bare
  onnxruntime call on the same model (``InferenceSession.run``) and beside the runtime's own bound inference call;
  loop period jitter at 50 Hz and at 500 Hz (policy every 10th tick) over --seconds each, and overruns;
  the flight recorder's cost: the control step with recording on against off (ticks interleaved in blocks, so
  both see the same machine, with the writer process working beside them), loop jitter and overruns with recording
  on and off at both rates, and the file size per minute;
  resident memory of a runtime process with the policy loaded and no simulator (no torch, no PyBullet);
  start-up time of `pupper-walk` to WALKING (soft start and fade-in included) and from SIGTERM to its exit (damping
  sent, backend closed; the goal is under 1 s) for every backend: sim, serial against the firmware emulator, and
  ros2_control against its stand-in (tests/ros2_control_standin.py), each robot in a process of its own.

The robot here is a fixed sensor sample (``FixedSampleBackend``): it stands in for hardware so that the figures
are the runtime's own. Usage: python benchmarks/runtime_latency.py [--seconds S] [--policy FILE] [--stop-only] [--rounds N]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the ros2_control stand-in lives in tests/
os.environ.setdefault("ROS_DOMAIN_ID", str(10 + os.getpid() % 90))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")

from pupper_ros import resources  # noqa: E402
from pupper_ros.backends.backend import Backend  # noqa: E402
from pupper_ros.backends.io import JointCommand, SensorSample  # noqa: E402


class FixedSampleBackend(Backend):
    """Benchmark stand-in for hardware: always the same healthy, fresh sample; writes go nowhere."""

    def __init__(self, profile):
        n = profile.num_joints
        self.sample = SensorSample(0.0, profile.default_pose.copy(), np.zeros(n), np.array([0, 0, 0, 1.0]), np.zeros(3), np.zeros(3))

    def open(self):
        pass

    def latest_sample(self, now):
        self.sample.stamp = now
        return self.sample

    def write(self, command: JointCommand, now):
        pass

    def close(self):
        pass


def build(policy_path, rate):
    from pupper_ros.assembly import assemble, parameter_values
    from pupper_ros.policy import load_policy
    from pupper_ros.robot_profile import load_robot_profile

    profile = load_robot_profile()
    policy = load_policy(policy_path, profile)
    values = parameter_values(control_rate=rate, soft_start_duration=0.1, fade_in_duration=0.1)
    runtime = assemble(profile, policy, values, backend=FixedSampleBackend(profile))
    return runtime, policy


def step_latency(policy_path, ticks: int = 20000):
    runtime, policy = build(policy_path, 50.0)
    controller = runtime.controller
    t = 0.0
    controller.activate(t)
    for _ in range(20):  # through soft start and fade-in to WALKING
        t += 0.02
        controller.tick(t)
    steps = np.empty(ticks)
    for i in range(ticks):
        t += 0.02
        start = time.perf_counter()
        controller.tick(t)
        steps[i] = time.perf_counter() - start
    import onnxruntime

    # The bare call: the model in its own session with the runtime's thread settings, called the way
    # onnxruntime's documentation calls it.
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(policy_path), options, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: np.zeros((1, policy.contract.observation_size), dtype=np.float32)}
    bare = np.empty(ticks)
    for i in range(ticks):
        start = time.perf_counter()
        session.run(None, feed)
        bare[i] = time.perf_counter() - start
    # The runtime's own inference (pre-bound input and output buffers), alone.
    obs = np.zeros(policy.contract.observation_size, dtype=np.float32)
    bound = np.empty(ticks)
    for i in range(ticks):
        start = time.perf_counter()
        policy(obs)
        bound[i] = time.perf_counter() - start
    return steps * 1e6, bare * 1e6, bound * 1e6


def recorder_for(controller, policy, path):
    from pupper_ros.flight_log.recorder import FlightRecorder

    return FlightRecorder(path, controller.profile, policy, {}, "benchmark")


def _pipe_backlog(fd: int) -> int:
    """Bytes written to the recorder's pipe that its writer process has not read yet."""
    import fcntl
    import termios

    count = bytearray(4)
    fcntl.ioctl(fd, termios.FIONREAD, count)
    return int.from_bytes(count, "little")


def recording_cost(policy_path, path, ticks: int = 20000, block: int = 200):
    """Control step plus the recorder's share of the tick (``record_tick``, what the loop calls after each tick)
    against the step alone, in alternating blocks of ``block`` ticks at 500 Hz (policy every 10th tick). Ticks run
    back to back (no sleep between them, whose wake-up latency on this VM swamps a few microseconds); after each
    recording block the writer process is given time to empty the pipe, so it is encoding while the next blocks run,
    as it does on a robot, and nothing is dropped."""
    runtime, policy = build(policy_path, 500.0)
    controller = runtime.controller
    recorder = recorder_for(controller, policy, path)
    t = 0.0
    controller.activate(t)
    for _ in range(200):
        t += 0.002
        controller.tick(t)
    on, off = [], []
    for i in range(ticks):
        t += 0.002
        recording = (i // block) % 2 == 0
        start = time.perf_counter()
        controller.tick(t)
        if recording:
            recorder.record_tick(t, controller)
        (on if recording else off).append(time.perf_counter() - start)
        if recording and i % block == block - 1:
            while _pipe_backlog(recorder._fd) > 0:
                time.sleep(0.001)
    recorder.close()
    return np.array(off) * 1e6, np.array(on) * 1e6, recorder.dropped


def jitter(policy_path, rate: float, seconds: float, record_to: Path | None = None):
    runtime, policy = build(policy_path, rate)
    controller, loop = runtime.controller, runtime.loop
    recorder = recorder_for(controller, policy, record_to) if record_to else None
    loop.on_tick = recorder.record_tick if recorder else None
    loop.stats.periods = __import__("collections").deque(maxlen=int(rate * seconds) + 10)
    controller.activate(time.monotonic())
    loop.start()
    time.sleep(seconds)
    loop.stop()
    if recorder is not None:
        recorder.close()
    periods = np.array(loop.stats.periods)
    deviation = np.abs(periods - 1.0 / rate) * 1000
    return deviation, loop.stats.overruns, loop.stats.ticks, (recorder.dropped if recorder else 0)


def runtime_rss_mb(policy_path) -> tuple[float, bool]:
    code = (
        "import sys, numpy as np\n"
        "sys.path.insert(0, %r)\n"
        "from runtime_latency import build\n"
        "import pupper_ros.ros.node, pupper_ros.ros.walk, pupper_ros.backends.serial_backend\n"
        "controller = build(%r, 50.0)[0].controller\n"
        "controller.activate(0.0)\n"
        "[controller.tick(0.02 * k) for k in range(1, 200)]\n"
        "heavy = any(m.split('.')[0] in ('torch', 'pybullet') for m in sys.modules)\n"
        "rss = [l for l in open('/proc/self/status') if l.startswith('VmRSS')][0].split()[1]\n"
        "print(int(rss) / 1024, heavy)\n"
    ) % (str(Path(__file__).parent), str(policy_path))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    return float(out[0]), out[1] == "True"


class RobotStandIn:
    """What each backend's daemon talks to here: nothing (sim), the firmware emulator on a pseudo-terminal in a
    process of its own (serial), the ros2_control stand-in in a process of its own (ros2_control)."""

    def __init__(self, backend: str, tmp: Path):
        self.backend, self.args, self._proc, self._standin = backend, ["--backend", backend], None, None
        if backend == "serial":
            link = tmp / "tty"
            self._proc = subprocess.Popen([sys.executable, "-m", "pupper_ros.sim.firmware_emulator", "--link", str(link)],
                                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            self._proc.stdout.readline()  # its banner: the port is ready
            self.args += ["--port", str(link)]
        elif backend == "ros2_control":
            from tests.ros2_control_standin import StandInProcess

            self._standin = StandInProcess().__enter__()
            self.args += ["--ros-args", "-p", "sensor_timeout:=0.5"]  # as its tests: the stand-in shares the two cores

    def close(self) -> None:
        if self._proc is not None:
            self._proc.stdin.close()
            self._proc.terminate()
            self._proc.wait()
        if self._standin is not None:
            self._standin.__exit__()


def startup_and_shutdown(backend: str) -> tuple[float, float, int | None]:
    """For `pupper-walk --backend BACKEND`: seconds from start to WALKING, seconds from SIGTERM to exit, and the exit
    code."""
    import rclpy
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from std_msgs.msg import String

    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("startup_probe", context=context)
    states = []
    latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    node.create_subscription(String, "/pupper_walk/state", lambda m: states.append(m.data), latched)
    executor = rclpy.executors.SingleThreadedExecutor(context=context)
    executor.add_node(node)
    with tempfile.TemporaryDirectory() as tmp:
        robot = RobotStandIn(backend, Path(tmp))
        try:
            start = time.monotonic()
            proc = subprocess.Popen([sys.executable, "-m", "pupper_ros.ros.walk", *robot.args], stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
            elapsed = float("nan")
            while time.monotonic() - start < 60:
                executor.spin_once(timeout_sec=0.01)
                if states and states[-1] == "WALKING":
                    elapsed = time.monotonic() - start
                    break
            signalled = time.monotonic()
            proc.terminate()
            try:
                code = proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                code = None
            shutdown = time.monotonic() - signalled
        finally:
            robot.close()
    node.destroy_node()
    rclpy.shutdown(context=context)
    return elapsed, shutdown, code


BACKENDS = ("sim", "serial", "ros2_control")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0, help="jitter measuring time per rate")
    parser.add_argument("--policy", type=Path, default=resources.default_policy_path())
    parser.add_argument("--stop-only", action="store_true", help="only start-up and SIGTERM to exit, for every backend")
    parser.add_argument("--rounds", type=int, default=3, help="start-up and stop rounds per backend")
    args = parser.parse_args()
    if not args.stop_only:
        timing(args)
    for backend in BACKENDS:
        for _ in range(args.rounds):
            startup, shutdown, code = startup_and_shutdown(backend)
            print(f"pupper-walk --backend {backend:12s} start-up to WALKING {startup:5.2f} s (1 s soft start + 1 s fade-in "
                  f"included); SIGTERM to exit {shutdown:.2f} s, exit code {code}")
    return 0


def timing(args) -> None:
    steps, bare, bound = step_latency(args.policy)
    print(f"control step (obs + inference + safety + command): p50 {np.percentile(steps, 50):6.1f} us  p99 {np.percentile(steps, 99):6.1f} us")
    print(f"bare onnxruntime call, session.run, same model:    p50 {np.percentile(bare, 50):6.1f} us  p99 {np.percentile(bare, 99):6.1f} us")
    print(f"the runtime's inference alone (IO binding):        p50 {np.percentile(bound, 50):6.1f} us  p99 {np.percentile(bound, 99):6.1f} us")
    print(f"step p99 / bare p99: {np.percentile(steps, 99) / np.percentile(bare, 99):.2f}x  "
          f"(/ the runtime's inference alone p99: {np.percentile(steps, 99) / np.percentile(bound, 99):.2f}x)")
    with tempfile.TemporaryDirectory() as tmp:
        off, on, dropped = recording_cost(args.policy, Path(tmp) / "cost.mcap")
        print(f"control step at 500 Hz, recording off: p50 {np.percentile(off, 50):6.1f} us  p99 {np.percentile(off, 99):6.1f} us")
        print(f"control step at 500 Hz, recording on:  p50 {np.percentile(on, 50):6.1f} us  p99 {np.percentile(on, 99):6.1f} us  "
              f"(p99 +{np.percentile(on, 99) - np.percentile(off, 99):.1f} us; {dropped} records dropped)")
        for rate in (50.0, 500.0):
            for record in (False, True):
                log = Path(tmp) / f"loop_{rate:.0f}.mcap" if record else None
                deviation, overruns, ticks, dropped = jitter(args.policy, rate, args.seconds, log)
                what = "recording on " if record else "recording off"
                line = (f"{rate:5.0f} Hz for {args.seconds:.0f} s, {what}: period jitter p50 {np.percentile(deviation, 50):.3f} ms  "
                        f"p99 {np.percentile(deviation, 99):.3f} ms  max {deviation.max():.3f} ms; overruns {overruns} of {ticks} ticks")
                if record:
                    line += f"; log {log.stat().st_size / args.seconds * 60 / 1e6:.1f} MB per minute, {dropped} records dropped"
                print(line)
    rss, heavy = runtime_rss_mb(args.policy)
    print(f"runtime process RSS (node, serial backend, policy loaded, no simulator): {rss:.0f} MB; torch or pybullet loaded: {heavy}")


if __name__ == "__main__":
    raise SystemExit(main())
