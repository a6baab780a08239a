"""The PNG plots of ``pupper-replay -o DIR``: replayed against logged, per joint and per body axis.

matplotlib (the ``replay`` extra) is imported when a plot is asked for, so the robot's install, which has no
matplotlib, still imports every runtime module.
"""

from __future__ import annotations

from pathlib import Path


def pyplot():
    """matplotlib's pyplot on a file-only backend; ImportError (naming matplotlib) where it is not installed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot

    return matplotlib.pyplot


def _joint_grid(log, title: str):
    plt = pyplot()
    fig, axes = plt.subplots(3, 4, figsize=(16, 9), sharex=True)
    fig.suptitle(title)
    return fig, axes.T.ravel()[: len(log.joints)]  # a column per leg, in the profile's order


def _save(fig, path: Path) -> Path:
    plt = pyplot()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def policy_plots(log, result, out: Path) -> list[Path]:
    t = log.policy_time - log.policy_time[0]
    fig, axes = _joint_grid(log, f"policy actions: logged against {result.policy.name} ({result.verdict})")
    for j, (ax, name) in enumerate(zip(axes, log.joints)):
        ax.plot(t, log.action[:, j], label="logged", lw=1.2)
        ax.plot(t, result.replayed[:, j], label="replayed", lw=0.8, ls="--")
        ax.set_title(name, fontsize=9)
    axes[0].legend(fontsize=8)
    return [_save(fig, Path(out) / "policy_actions.png")]


def sim_plots(log, result, out: Path) -> list[Path]:
    plt = pyplot()
    slug = result.mode.replace(" ", "_")
    paths = []
    fig, axes = _joint_grid(log, f"{result.mode} in {result.engine}: joint positions (rad), logged against simulated")
    for j, (ax, name) in enumerate(zip(axes, log.joints)):
        ax.plot(result.time, result.logged_joint_position[:, j], label="logged", lw=1.2)
        ax.plot(result.time, result.joint_position[:, j], label="simulated", lw=0.8)
        ax.set_title(f"{name} (RMS {result.joint_rms[j]:.3f})", fontsize=9)
    axes[0].legend(fontsize=8)
    paths.append(_save(fig, Path(out) / f"{slug}_joints.png"))

    fig, axes = plt.subplots(3, 1, figsize=(12, 7), sharex=True)
    fig.suptitle(f"{result.mode} in {result.engine}: body rates (rad/s), logged against simulated")
    for a, ax in enumerate(axes):
        ax.plot(result.time, result.logged_body_rate[:, a], label="logged", lw=1.2)
        ax.plot(result.time, result.body_rate[:, a], label="simulated", lw=0.8)
        ax.set_ylabel(f"{('roll', 'pitch', 'yaw')[a]} (RMS {result.body_rate_rms[a]:.3f})")
    axes[0].legend(fontsize=8)
    axes[-1].set_xlabel("s after the first tick")
    paths.append(_save(fig, Path(out) / f"{slug}_body_rates.png"))

    if result.achieved is not None:
        fig, axes = plt.subplots(3, 1, figsize=(12, 7), sharex=True)
        fig.suptitle(f"{result.mode} in {result.engine}: commanded against achieved velocity")
        for a, (ax, label) in enumerate(zip(axes, ("vx m/s", "vy m/s", "yaw rate rad/s"))):
            ax.plot(result.time, result.achieved[:, a], label="achieved (simulated)", lw=0.8)
            for start, end, commanded, _ in result.velocity:
                ax.hlines(commanded[a], start, end, colors="k", lw=1.5, label="commanded" if start == result.velocity[0][0] else None)
            ax.set_ylabel(label)
        axes[0].legend(fontsize=8)
        axes[-1].set_xlabel("s after the first tick")
        paths.append(_save(fig, Path(out) / f"{slug}_velocity.png"))
    return paths
