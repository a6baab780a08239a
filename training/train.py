"""``pupper-train``: PPO (rsl-rl-lib) on the vectorized Pupper environments, with checkpoints and a progress bar.

rsl_rl's PPO (storage, returns, update) with the collection done by the environment workers themselves, acting with
a numpy snapshot of the actor: one message per worker and rollout instead of one per step, and the update can run
while the workers collect the next rollout (``ppo.overlap_update``). Progress, checkpoints and Ctrl-C are ours.
"""

from __future__ import annotations

import argparse
import collections
import csv
import datetime as dt
import os
import signal
import sys
import time
from pathlib import Path

import torch
import yaml

from pupper_ros.sim import EngineError, check_engine
from training.config import ConfigError, TrainConfig, load_config

CHECKPOINT_DIR = "checkpoints"
LATEST = "latest.pt"


def rsl_rl_config(config: TrainConfig) -> dict:
    ppo, policy = config.ppo, config.policy
    symmetry = None
    if ppo.symmetry:
        symmetry = {"use_data_augmentation": True, "use_mirror_loss": False, "mirror_loss_coeff": 0.0,
                    "data_augmentation_func": "training.symmetry:mirror_augmentation"}
    return {
        "num_steps_per_env": ppo.steps_per_env,
        "save_interval": config.save_every,
        "multi_gpu": None,
        "obs_groups": {"actor": ["policy"], "critic": ["critic"]},
        "algorithm": {
            "class_name": "PPO", "num_learning_epochs": ppo.learning_epochs, "num_mini_batches": ppo.mini_batches,
            "clip_param": ppo.clip, "gamma": ppo.gamma, "lam": ppo.lam, "learning_rate": ppo.learning_rate,
            "desired_kl": ppo.desired_kl, "schedule": "adaptive", "entropy_coef": ppo.entropy_coef,
            "value_loss_coef": ppo.value_loss_coef, "max_grad_norm": ppo.max_grad_norm, "symmetry_cfg": symmetry,
        },
        "actor": {
            "class_name": "MLPModel", "hidden_dims": list(policy.actor_hidden), "activation": policy.activation,
            "obs_normalization": True,
            "distribution_cfg": {"class_name": "GaussianDistribution", "init_std": policy.init_std},
        },
        "critic": {
            "class_name": "MLPModel", "hidden_dims": list(policy.critic_hidden), "activation": policy.activation,
            "obs_normalization": True,
        },
    }


def build_algorithm(config: TrainConfig, env):
    import contextlib
    import io

    from rsl_rl.algorithms import PPO

    with contextlib.redirect_stdout(io.StringIO()):  # rsl_rl prints the network layouts
        return PPO.construct_algorithm(env.get_observations(), env, rsl_rl_config(config), "cpu")


def learn_from_rollout(alg, rollout) -> dict[str, float]:
    """One PPO update of rsl_rl's algorithm on a rollout collected by the workers."""
    fill_storage(alg, rollout)
    return alg.update()


def fill_storage(alg, rollout) -> None:
    """Fill rsl_rl's rollout storage from a worker-collected rollout and compute returns and advantages.

    The workers sampled the actions from a numpy copy of the actor (``rollout.action_means``, ``action_std``): the
    importance ratio is taken against that behaviour policy. When the rollout was collected during the previous
    update, the actor has moved on since; the KL reference of the adaptive learning rate is then the actor as it is
    now, before this update, so that the schedule measures this update's own step as in lockstep PPO.
    """
    from torch.distributions import Normal

    from training.vec_env import observation_groups

    steps, envs = rollout.actions.shape[:2]
    storage = alg.storage
    with torch.inference_mode():
        obs = observation_groups(rollout.observations, rollout.critic_observations)
        flat = obs.flatten(0, 1)
        values = alg.critic(flat).view(steps, envs, 1)
        alg.actor(flat, stochastic_output=True)
        reference = tuple(p.view(steps, envs, -1) for p in alg.actor.output_distribution_params)
        actions = torch.from_numpy(rollout.actions)
        behaviour = Normal(torch.from_numpy(rollout.action_means), torch.from_numpy(rollout.action_std))
        log_probs = behaviour.log_prob(actions).sum(dim=-1)
        rewards = torch.from_numpy(rollout.rewards)
        rewards = rewards + alg.gamma * values.squeeze(-1) * torch.from_numpy(rollout.time_outs).float()  # bootstrap time-outs
        dones = torch.from_numpy(rollout.dones).float()
        transition = alg.transition
        for t in range(steps):
            transition.observations, transition.actions, transition.values = obs[t], actions[t], values[t]
            transition.actions_log_prob, transition.distribution_params = log_probs[t], tuple(p[t] for p in reference)
            transition.rewards, transition.dones = rewards[t], dones[t]
            storage.add_transition(transition)
            transition.clear()
        alg.compute_returns(observation_groups(rollout.last_observations, rollout.last_critic_observations))


def training_iterations(alg, env, config: TrainConfig):
    """Endless PPO iterations; yields (rollout, losses) after each update.

    With ``ppo.overlap_update`` the workers collect rollout k+1 while the trainer updates on rollout k, acting with
    the actor from before that update (one update behind, as in asynchronous PPO): the two cores are kept busy
    instead of taking turns. Otherwise they wait for the update, which then uses every core.
    """
    from training.actor_snapshot import take_snapshot

    steps = config.ppo.steps_per_env
    overlap = config.ppo.overlap_update
    env.start_rollout(take_snapshot(alg.actor), steps)
    try:
        while True:
            rollout = env.finish_rollout()
            if overlap:
                env.start_rollout(take_snapshot(alg.actor), steps)
                torch.set_num_threads(1)  # the workers have the other cores
                losses = learn_from_rollout(alg, rollout)
            else:
                torch.set_num_threads(os.cpu_count() or 1)  # the workers wait: the update may use every core
                losses = learn_from_rollout(alg, rollout)
                env.start_rollout(take_snapshot(alg.actor), steps)
            yield rollout, losses
    finally:
        torch.set_num_threads(1)


def batched_iterations(alg, env, config: TrainConfig):
    """Endless PPO iterations on the batched environment (MuJoCo): rsl_rl's own act / process_env_step / update on
    every robot at once; yields (summary, losses) after each update. Collection runs the physics on MuJoCo's thread
    pool and the policy on one torch thread; the update takes every core."""
    cores = os.cpu_count() or 1
    obs = env.get_observations()
    try:
        while True:
            torch.set_num_threads(1)
            with torch.inference_mode():
                for _ in range(config.ppo.steps_per_env):
                    actions = alg.act(obs)
                    obs, rewards, dones, extras = env.step(actions)
                    alg.process_env_step(obs, rewards, dones, extras)
                alg.compute_returns(obs)
            torch.set_num_threads(cores)
            losses = alg.update()
            yield env.take_summary(), losses
    finally:
        torch.set_num_threads(1)


def make_env(config: TrainConfig):
    """``env.batched``: every robot in one MuJoCo batch in this process; otherwise environments in worker processes."""
    if config.env.batched:
        from training.batch_vec_env import BatchVecEnv

        return BatchVecEnv(config)
    from training.vec_env import PupperVecEnv

    return PupperVecEnv(config)


def save_checkpoint(path: Path, alg, config: TrainConfig, iteration: int, env_steps: int, wall_clock: float) -> None:
    state = {
        "algorithm": alg.save(),
        "iteration": iteration,
        "env_steps": env_steps,
        "wall_clock": wall_clock,
        "config": config.to_dict(),
        "config_digest": config.digest(),
        "seed": config.seed,
        "saved": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def progress_until(progress_csv: Path, iteration: int, path: Path) -> None:
    """Write to ``path`` the rows of the run's progress log up to ``iteration`` (header kept)."""
    with progress_csv.open(newline="") as source:
        rows = list(csv.reader(source))
    with path.open("w", newline="") as copy:
        csv.writer(copy).writerows([rows[0]] + [row for row in rows[1:] if int(row[0]) <= iteration])


def keep_progress_until(progress_path: Path, iteration: int) -> None:
    """Drop the log's rows after ``iteration``: a run killed after its last checkpoint logged iterations that the
    resumed run repeats, and the log must have each iteration once."""
    tmp = progress_path.with_suffix(".tmp")
    progress_until(progress_path, iteration, tmp)
    os.replace(tmp, progress_path)


def train(config: TrainConfig, out: Path, resume: Path | None = None, quiet: bool = False,
          minutes: float | None = None) -> Path:
    """Train until ``config.steps`` environment steps, or until ``minutes`` of wall clock have passed (then the final
    checkpoint is written and the point reached is printed); returns the last checkpoint's path."""
    from torch.utils.tensorboard import SummaryWriter
    from tqdm import tqdm

    torch.manual_seed(config.seed)
    torch.set_num_threads(1)  # the cores belong to the environment workers
    env = make_env(config)  # first: a batch that cannot be built leaves no run directory behind
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))

    batched = config.env.batched
    alg = build_algorithm(config, env)
    iteration, env_steps, wall_before = 0, 0, 0.0
    if resume is not None:
        state = torch.load(resume, weights_only=False)
        alg.load(state["algorithm"], None, strict=True)
        iteration, env_steps, wall_before = state["iteration"], state["env_steps"], state["wall_clock"]
    steps_per_iteration = config.envs * config.ppo.steps_per_env
    total_iterations = max(iteration + 1, -(-config.steps // steps_per_iteration))
    writer = SummaryWriter(log_dir=str(out / "tensorboard"))
    progress_path = out / "progress.csv"
    if resume is not None and progress_path.exists():
        keep_progress_until(progress_path, iteration)
    new_file = not progress_path.exists()
    progress_file = progress_path.open("a", newline="")
    progress = csv.writer(progress_file)
    if new_file:
        progress.writerow(["iteration", "env_steps", "wall_clock_s", "mean_return", "mean_episode_length", "fall_share",
                           "checkpoint", "nonfinite_resets"])
    bar = tqdm(total=total_iterations * steps_per_iteration, initial=env_steps, unit="step", unit_scale=True,
               dynamic_ncols=True, disable=quiet, file=sys.stdout)
    start = time.monotonic()
    checkpoint = out / CHECKPOINT_DIR / LATEST
    recent: collections.deque = collections.deque(maxlen=100)
    alg.train_mode()
    iterations = batched_iterations(alg, env, config) if batched else training_iterations(alg, env, config)
    try:
        while iteration < total_iterations:
            rollout, losses = next(iterations)
            iteration += 1
            env_steps += steps_per_iteration
            wall = wall_before + time.monotonic() - start

            recent.extend(rollout.finished)
            terms = rollout.reward_terms
            finished = list(recent)  # the last 100 episodes, as rsl_rl reports them
            mean_return = sum(f[0] for f in finished) / len(finished) if finished else float("nan")
            mean_length = sum(f[1] for f in finished) / len(finished) if finished else float("nan")
            fall_share = sum(f[2] for f in finished) / len(finished) if finished else float("nan")
            for name, value in losses.items():
                writer.add_scalar(f"loss/{name}", value, env_steps)
            for name, value in terms.items():
                writer.add_scalar(f"reward/{name}", value / steps_per_iteration, env_steps)
            if finished:
                writer.add_scalar("episode/return", mean_return, env_steps)
                writer.add_scalar("episode/length", mean_length, env_steps)
                writer.add_scalar("episode/fall_share", fall_share, env_steps)
            writer.add_scalar("policy/action_std", float(alg.get_policy().output_std.detach().mean()), env_steps)
            bar.update(steps_per_iteration)
            bar.set_postfix_str(f"it {iteration}/{total_iterations} return {mean_return:6.2f} len {mean_length:5.0f} falls {fall_share:4.2f}")

            out_of_time = minutes is not None and time.monotonic() - start >= minutes * 60
            saving = iteration % config.save_every == 0 or iteration == total_iterations or out_of_time
            numbered = out / CHECKPOINT_DIR / f"model_{iteration:05d}.pt"
            saved = numbered.name if saving else ""
            # The row first: a run killed between the two then resumes from the previous checkpoint and drops this
            # row; the other way round it resumed from this checkpoint with this row never written.
            progress.writerow([iteration, env_steps, f"{wall:.1f}", f"{mean_return:.4f}", f"{mean_length:.1f}", f"{fall_share:.3f}",
                               saved, getattr(rollout, "nonfinite_resets", 0)])
            progress_file.flush()
            if saving:
                save_checkpoint(numbered, alg, config, iteration, env_steps, wall)
                save_checkpoint(checkpoint, alg, config, iteration, env_steps, wall)
            if out_of_time:
                print(f"\npupper-train: stopped after {minutes:g} min (--minutes) at iteration {iteration}, "
                      f"{env_steps:,} env steps; checkpoint {saved}", file=sys.stderr)
                break
    except KeyboardInterrupt:
        wall = wall_before + time.monotonic() - start
        save_checkpoint(checkpoint, alg, config, iteration, env_steps, wall)
        print(f"\ninterrupted: checkpoint saved to {checkpoint} (resume with --resume {out})", file=sys.stderr)
    finally:
        iterations.close()
        bar.close()
        writer.close()
        progress_file.close()
        env.close()
    return checkpoint


def resolve_checkpoint(run_or_checkpoint: str | Path) -> Path:
    path = Path(run_or_checkpoint)
    if path.is_dir():
        path = path / CHECKPOINT_DIR / LATEST
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    return path


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pupper-train", description="Train a Pupper walking policy with PPO in simulation (PyBullet or MuJoCo).")
    parser.add_argument("--config", type=Path, help="YAML file overriding training/default.yaml")
    parser.add_argument("--envs", type=int, help="number of parallel environments")
    parser.add_argument("--workers", type=int, help="environment worker processes (0 = one per core)")
    parser.add_argument("--steps", type=int, help="environment steps in total")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--resume", type=Path, metavar="RUN", help="continue a run from its latest checkpoint")
    parser.add_argument("--out", type=Path, help="run directory (default runs/<date-time>)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--engine", choices=("pybullet", "mujoco"), help="physics engine (overrides env.engine)")
    parser.add_argument("--batched", action="store_true",
                        help="MuJoCo: every robot in one process, stepped as a batch (sets env.batched)")
    parser.add_argument("--minutes", type=float, help="stop after this many minutes of wall clock, with a checkpoint")
    args = parser.parse_args(argv)
    if args.minutes is not None and not args.minutes > 0:
        print(f"pupper-train: --minutes must be positive, got {args.minutes}", file=sys.stderr)
        return 2

    overrides = {k: v for k, v in (("envs", args.envs), ("workers", args.workers), ("steps", args.steps), ("seed", args.seed)) if v is not None}
    if args.engine is not None:
        overrides["env"] = {"engine": args.engine}
    if args.batched:
        overrides.setdefault("env", {})["batched"] = True
    resume = None
    try:
        config_path = args.config
        if args.resume is not None:
            resume = resolve_checkpoint(args.resume)
            if config_path is None:
                config_path = resume.parent.parent / "config.yaml"
        config = load_config(config_path, overrides)
        check_engine(config.env.engine)
    except (ConfigError, EngineError, FileNotFoundError) as exc:
        print(f"pupper-train: {exc}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _interrupt)  # `kill`, `systemctl stop`: checkpoint and exit as on Ctrl-C
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:  # started with `&` from a script: Ctrl-C is ignored there
        signal.signal(signal.SIGINT, _interrupt)
    out = args.out or (resume.parent.parent if resume else Path("runs") / dt.datetime.now().strftime("%Y%m%d-%H%M%S"))
    print(f"pupper-train: {config.envs} envs, {config.steps:,} steps, seed {config.seed}, run {out}")
    from pupper_ros.sim.mujoco_batch import BatchError

    try:
        checkpoint = train(config, out, resume, quiet=args.quiet, minutes=args.minutes)
    except BatchError as exc:
        print(f"pupper-train: {exc}", file=sys.stderr)
        return 2
    print(f"pupper-train: latest checkpoint {checkpoint}; export with: pupper-export {out} -o model.onnx")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
