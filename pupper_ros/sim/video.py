"""A video of a simulated run, rendered after the fact from recorded poses, so rendering never slows the control loop."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pupper_ros.robot_profile import RobotProfile


class PoseRecorder:
    """Keeps the base pose and joint angles every ``every`` ticks (cheap copies in the control thread)."""

    def __init__(self, every: int):
        self.every = every
        self.frames: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._count = 0

    def capture(self, truth, joint_position) -> None:
        self._count += 1
        if truth is not None and self._count % self.every == 0:
            self.frames.append((np.array(truth[0]), np.array(truth[1]), np.array(joint_position)))


def render_gif(profile: RobotProfile, frames, path: Path, frame_seconds: float) -> None:
    from PIL import Image

    from pupper_ros.sim import make_simulation

    sim = make_simulation(profile, "pybullet")  # its renderer works headless, whichever engine ran
    images = []
    try:
        for position, orientation, joints in frames:
            sim.reset(joint_position=joints)
            sim.set_base_pose(position, orientation)
            images.append(Image.fromarray(sim.render()))
    finally:
        sim.close()
    if images:
        images[0].save(path, save_all=True, append_images=images[1:], duration=int(frame_seconds * 1000), loop=0)
