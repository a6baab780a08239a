"""What a robot is asked to do, as shares of its profile's trained command ranges: one rule for the evaluation's
command suite (training/evaluate.py, the bar) and the demo's script (``pupper-walk --demo``), so the Pupper v2 demo
asks for what Pupper v2 was trained to do."""

from __future__ import annotations

from pupper_ros.robot_profile import RobotProfile

# (name, axis, share of that axis's maximum; a negative share is of its minimum)
SUITE_SHARES = [("forward", 0, 0.4), ("forward", 0, 0.8), ("backward", 0, -0.4), ("left", 1, 0.6), ("right", 1, -0.6),
                ("turn_left", 2, 2 / 3), ("turn_right", 2, -2 / 3)]
# The demo: (segment, seconds, (axis, share) or None to stand)
DEMO_SEGMENTS = (("stand", 3.0, None), ("forward", 5.0, (0, 0.4)), ("turn left", 5.0, (2, 2 / 3)),
                 ("sideways", 5.0, (1, 0.6)), ("backward", 5.0, (0, -0.4)), ("stop", 3.0, None))


def share_command(profile: RobotProfile, axis: int, share: float) -> tuple[float, float, float]:
    """``share`` of the axis's trained maximum (a negative share: of its minimum), rounded to 0.01."""
    limit = profile.command_high[axis] if share > 0 else profile.command_low[axis]
    command = [0.0, 0.0, 0.0]
    command[axis] = round(abs(share) * float(limit), 2)
    return tuple(command)


def command_suite(profile: RobotProfile) -> dict[str, tuple[float, float, float]]:
    """Stand, then each entry of SUITE_SHARES for this robot (Pupper v3: forward 0.3 and 0.6 m/s, backward 0.3,
    sideways 0.3, turning 1 rad/s)."""
    suite = {"stand": (0.0, 0.0, 0.0)}
    for name, axis, share in SUITE_SHARES:
        command = share_command(profile, axis, share)
        suite[f"{name}_{abs(command[axis]):g}"] = command
    return suite


def demo_script(profile: RobotProfile) -> tuple[tuple[str, float, tuple[float, float, float]], ...]:
    """The demo's segments for this robot (Pupper v3: forward 0.3 m/s, turning 1 rad/s, sideways 0.3, backward 0.3)."""
    return tuple((name, seconds, share_command(profile, *share) if share else (0.0, 0.0, 0.0))
                 for name, seconds, share in DEMO_SEGMENTS)
