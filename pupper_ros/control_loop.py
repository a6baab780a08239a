"""The fixed-rate loop around a ``Controller``: a dedicated thread on a monotonic clock.

``next += period; sleep until next`` (never sleep(dt) after the work: that drifts). A tick that ends past its
deadline counts as an overrun; the loop skips ahead by whole periods and never bursts to catch up (ros2_control's
rule). In lock-step mode the clock is simulated time and the loop does not sleep.

Nothing ends the loop silently: an exception anywhere in an iteration (the tick, the per-tick callback that feeds
telemetry and the flight recorder, the bookkeeping) latches DAMPING naming it and writes damping, and the loop goes
on sending damping. A ``LoopWatchdog`` outside the control thread covers what that cannot: a thread that hangs or
dies. It is started with a real-time loop; a lock-step loop has no wall clock to hold it to.
"""

from __future__ import annotations

import threading
import time
from collections import deque

import numpy as np

from pupper_ros.controller import Controller


class LoopStats:
    """Period and tick-duration samples of the last few seconds, plus running counters."""

    def __init__(self, window: int):
        self.periods = deque(maxlen=window)
        self.durations = deque(maxlen=window)
        self.inference = deque(maxlen=window)
        self.ticks = 0
        self.overruns = 0
        self.missed_ticks = 0

    @staticmethod
    def percentile(samples, q: float) -> float:
        return float(np.percentile(np.fromiter(samples, float), q)) if samples else float("nan")

    def summary(self) -> dict[str, float]:
        return {
            "period_mean_ms": 1000 * (float(np.mean(self.periods)) if self.periods else float("nan")),
            "period_p99_ms": 1000 * self.percentile(self.periods, 99),
            "tick_p99_ms": 1000 * self.percentile(self.durations, 99),
            "inference_p99_ms": 1000 * self.percentile(self.inference, 99),
            "ticks": self.ticks,
            "overruns": self.overruns,
        }


class ControlLoop:
    def __init__(self, controller: Controller, period: float, lockstep: bool = False, on_tick=None):
        self.controller = controller
        self.period = period
        self.lockstep = lockstep
        self.on_tick = on_tick  # called after each tick with (now, controller); must be quick
        self.stats = LoopStats(window=max(10, int(round(5.0 / period))))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.sim_time = 0.0
        self.last_completed = time.monotonic()  # when the newest iteration ended (the watchdog reads it)
        self.watchdog = None if lockstep else LoopWatchdog(self, controller.supervisor.limits.watchdog_timeout)

    def now(self) -> float:
        return self.sim_time if self.lockstep else time.monotonic()

    def start(self) -> None:
        self._stop.clear()
        self.last_completed = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="pupper-control", daemon=True)
        self._thread.start()
        if self.watchdog is not None:
            self.watchdog.start()

    def stop(self, timeout: float = 1.0) -> None:
        self._stop.set()
        if self.watchdog is not None:
            self.watchdog.stop()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        self._thread = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def run_ticks(self, count: int) -> None:
        """Lock-step only: run ``count`` ticks in the calling thread."""
        for _ in range(count):
            self._tick_lockstep()

    def _tick_lockstep(self) -> None:
        started = time.perf_counter()
        try:
            self.controller.tick(self.sim_time)
            self.stats.durations.append(time.perf_counter() - started)
            self.stats.periods.append(self.period)
            if self.controller.ran_policy:
                self.stats.inference.append(self.controller.last_inference_s)
            self.stats.ticks += 1
            if self.on_tick:
                self.on_tick(self.sim_time, self.controller)
        except Exception as exc:  # noqa: BLE001 - fail closed, keep ticking
            self._failed(exc, self.sim_time)
        self.sim_time += self.period
        self.last_completed = time.monotonic()

    def _failed(self, exc: Exception, now: float) -> None:
        self.controller.fail_closed(f"control loop failed: {type(exc).__name__}: {exc}", now)

    def _run(self) -> None:
        if self.lockstep:
            while not self._stop.is_set():
                self._tick_lockstep()
            return
        period = self.period
        next_deadline = time.monotonic()
        last_start = None
        supervisor = self.controller.supervisor
        while not self._stop.is_set():
            start = time.monotonic()
            if last_start is not None:
                self.stats.periods.append(start - last_start)
            last_start = start
            try:
                self.controller.tick(start)
                self.stats.durations.append(time.monotonic() - start)
                if self.controller.ran_policy:
                    self.stats.inference.append(self.controller.last_inference_s)
                self.stats.ticks += 1
                if self.on_tick:
                    self.on_tick(start, self.controller)
            except Exception as exc:  # noqa: BLE001 - fail closed, keep ticking
                self._failed(exc, start)
            self.last_completed = time.monotonic()
            next_deadline += period
            now = time.monotonic()
            missed = 0
            if now > next_deadline:
                missed = int((now - next_deadline) // period) + 1
                next_deadline += missed * period  # skip whole periods, never burst
                self.stats.overruns += 1
                self.stats.missed_ticks += missed
            with self.controller.lock:
                supervisor.note_overrun(missed)
            remaining = next_deadline - time.monotonic()
            if remaining > SPIN_MARGIN:
                self._stop.wait(remaining - SPIN_MARGIN)
            _yield_until(next_deadline)


class LoopWatchdog:
    """A thread of its own that latches DAMPING and writes damping when the control loop completes no iteration for
    ``timeout`` s while it should be running (a hung tick, a dead thread). It repeats the damping command while the
    stall lasts. A wake-up of its own that came ``timeout`` late means the whole process was frozen, not the loop: it
    then looks again before judging."""

    def __init__(self, loop: ControlLoop, timeout: float):
        self.loop = loop
        self.timeout = timeout
        self.trips = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="pupper-watchdog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(1.0)
        self._thread = None

    def _run(self) -> None:
        check = self.timeout / 4
        stalled = False
        woke = time.monotonic()
        while not self._stop.wait(check):
            now = time.monotonic()
            frozen = now - woke > check + self.timeout
            woke = now
            silence = now - self.loop.last_completed
            if frozen or silence <= self.timeout:
                stalled = False
                continue
            if not stalled:
                self.trips += 1
            stalled = True
            reason = (f"control loop stalled: no tick completed for {silence * 1000:.0f} ms "
                      f"(watchdog limit {self.timeout * 1000:.0f} ms)")
            self.loop.controller.fail_closed(reason, now, lock_timeout=check)


SPIN_MARGIN = 0.0003  # s before a deadline where the loop stops sleeping and yields instead (sleep wake-up jitter)


def _yield_until(deadline: float) -> None:
    while time.monotonic() < deadline:
        time.sleep(0)
