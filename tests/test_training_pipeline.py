"""A few real PPO iterations on a tiny config, then export and load: the whole retrain-export-deploy path."""

import os
import subprocess
import sys

import numpy as np
import torch
import yaml

from pupper_ros.contract import CURRENT_CONTRACT
from pupper_ros.policy import load_policy
from training.config import load_config
from training.export import export_checkpoint, policy_from_checkpoint
from training.train import main as train_main
from training.runner import train
import pytest

pytestmark = pytest.mark.slow  # every test here starts a process, a real-time robot or a build

TINY = {"envs": 2, "workers": 1, "steps": 2 * 8 * 3, "save_every": 2,
        "ppo": {"steps_per_env": 8, "mini_batches": 2, "learning_epochs": 1},
        "policy": {"actor_hidden": [32, 32], "critic_hidden": [32, 32]}}


def test_tiny_training_run_exports_a_loadable_policy(tmp_path, profile):
    config = load_config(overrides=TINY)
    checkpoint = train(config, tmp_path / "run", quiet=True)
    assert checkpoint.is_file()
    assert (tmp_path / "run" / "config.yaml").is_file()
    numbered = sorted((tmp_path / "run" / "checkpoints").glob("model_*.pt"))
    assert [p.name for p in numbered] == ["model_00002.pt", "model_00003.pt"]
    lines = (tmp_path / "run" / "progress.csv").read_text().splitlines()
    assert len(lines) == 1 + 3

    onnx_path = tmp_path / "policy.onnx"
    difference = export_checkpoint(checkpoint, onnx_path)
    assert difference < 1e-5
    policy = load_policy(onnx_path, profile)
    assert policy.info.provenance["steps"] == 3 * 2 * 8
    assert policy.info.provenance["config_digest"] == config.digest()

    # The exported graph includes the observation normalizer: it matches the torch actor on raw observations.
    actor, _, _ = policy_from_checkpoint(checkpoint)
    obs = np.random.default_rng(0).normal(0, 3, (16, CURRENT_CONTRACT.observation_size)).astype(np.float32)
    with torch.no_grad():
        expected = actor(torch.from_numpy(obs)).numpy()
    assert np.max(np.abs(policy.run_batch(obs) - expected)) < 1e-5


def test_report_evaluates_in_both_engines_side_by_side(tmp_path):
    """pupper-report on a tiny run (1 episode of 2 s per command, so the bar is not the point): both engines'
    metrics and plots are written, the report puts their tables side by side, and a policy that fails in either
    engine does not pass."""
    import json

    from training.report import main as report_main

    train(load_config(overrides=TINY), tmp_path / "run", quiet=True)
    out = tmp_path / "models" / "tiny_walk"
    assert report_main([str(tmp_path / "run"), "-o", str(out), "--robot", "pupper_v2"]) == 2
    assert not out.parent.exists()  # refused before exporting or evaluating anything
    assert report_main([str(tmp_path / "run"), "-o", str(out), "--episodes", "1", "--seconds", "2"]) == 0
    for suffix, engine in (("_eval", "pybullet"), ("_eval_mujoco", "mujoco")):
        metrics = json.loads((out.parent / f"tiny_walk{suffix}.json").read_text())
        assert metrics["engine"] == engine and set(metrics["commands"]) == {"stand", "forward_0.3", "forward_0.6",
               "backward_0.3", "left_0.3", "right_0.3", "turn_left_1", "turn_right_1"}
        assert (out.parent / f"tiny_walk{suffix}.png").is_file()
    progress = (out.parent / "tiny_walk_progress.csv").read_text().splitlines()
    assert progress[0].startswith("iteration,env_steps") and progress[-1].split(",")[0] == "3"  # TINY's last iteration
    report = (out.parent / "tiny_walk.md").read_text()
    assert "| falls pybullet | falls mujoco |" in report and "| linear error m/s pybullet | linear error m/s mujoco |" in report
    assert "bar NOT MET" in report and "mujoco: " in report and "pybullet: " in report


def test_resume_continues_from_the_checkpoint_with_draws_of_its_own(tmp_path, monkeypatch):
    """The resumed run goes on from the checkpoint's iteration; its environments are seeded anew from that iteration
    (not a replay of the commands and randomization the run started with), its config keeps the run's seed."""
    import training.runner

    seeds = []
    make_env = training.runner.make_env
    monkeypatch.setattr(training.runner, "make_env", lambda config, ray=None: seeds.append(config.seed) or make_env(config, ray))
    config = load_config(overrides=TINY)
    checkpoint = train(config, tmp_path / "run", quiet=True)
    state = torch.load(checkpoint, weights_only=False)
    longer = load_config(overrides=dict(TINY, steps=2 * 8 * 5))
    train(longer, tmp_path / "run", resume=checkpoint, quiet=True)
    resumed = torch.load(checkpoint, weights_only=False)
    assert (state["iteration"], resumed["iteration"]) == (3, 5)
    assert seeds == [config.seed, training.runner.resumed_seed(config.seed, 3)]
    assert len({config.seed, training.runner.resumed_seed(config.seed, 3), training.runner.resumed_seed(config.seed, 4)}) == 3
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["seed"] == config.seed


def test_a_killed_run_resumes_from_its_last_checkpoint_and_logs_each_iteration_once(tmp_path):
    """SIGKILL (no chance to checkpoint) mid-run: the last checkpoint is at most save_every iterations behind the
    last logged iteration, and resuming continues from it with the log's later rows replaced, not repeated."""
    import signal
    import time

    import yaml

    config, run = tmp_path / "tiny.yaml", tmp_path / "run"
    config.write_text(yaml.safe_dump(dict(TINY, steps=2 * 8 * 10_000)))
    proc = subprocess.Popen([sys.executable, "-m", "training.train", "--config", str(config), "--out", str(run),
                             "--quiet"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        while not (run / "checkpoints" / "model_00006.pt").exists():
            assert proc.poll() is None, proc.stderr.read()
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    logged = [int(row.split(",")[0]) for row in (run / "progress.csv").read_text().splitlines()[1:]]
    saved = torch.load(run / "checkpoints" / "latest.pt", weights_only=False)["iteration"]
    assert logged[-1] - saved <= TINY["save_every"], (logged[-1], saved)
    steps = (saved + 3) * 2 * 8
    assert train_main(["--resume", str(run), "--steps", str(steps), "--quiet"]) == 0
    resumed = torch.load(run / "checkpoints" / "latest.pt", weights_only=False)
    assert (resumed["iteration"], resumed["env_steps"]) == (saved + 3, steps)
    logged = [int(row.split(",")[0]) for row in (run / "progress.csv").read_text().splitlines()[1:]]
    assert logged == list(range(1, saved + 4))


def test_train_cli_rejects_an_unknown_config_key(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("ppo:\n  gama: 0.9\n")
    assert train_main(["--config", str(bad), "--out", str(tmp_path / "run")]) == 2
    assert "unknown config key 'ppo.gama'" in capsys.readouterr().err


def test_train_and_eval_refuse_an_engine_that_is_not_installed_naming_the_extra(tmp_path, monkeypatch, capsys):
    import importlib.util

    from training.evaluate import main as eval_main

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mujoco" else real(name, *a))
    config = tmp_path / "mujoco.yaml"
    config.write_text("env:\n  engine: mujoco\n")
    assert train_main(["--config", str(config), "--out", str(tmp_path / "run")]) == 2
    assert "pip install 'pupper_ros[mujoco]'" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()  # refused before anything started
    assert eval_main(["policy.onnx", "--engine", "mujoco"]) == 2
    assert "pip install 'pupper_ros[mujoco]'" in capsys.readouterr().err


def test_eval_refuses_a_policy_for_another_robot(tmp_path, capsys):
    from pupper_ros import resources
    from training.evaluate import main as eval_main

    assert eval_main([str(resources.default_policy_path()), "--robot", "pupper_v2", "-o", str(tmp_path)]) == 2
    assert "model is for robot 'pupper_v3', this robot is 'pupper_v2'" in capsys.readouterr().err


def test_time_to_walk_refuses_a_run_without_checkpoints_or_for_another_robot(tmp_path):
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "time_to_walk.py"
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("robot: pupper_v3\n")
    result = subprocess.run([sys.executable, str(script), str(run)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "has no checkpoints yet" in result.stderr, result.stderr
    (run / "config.yaml").write_text("robot: pupper_v2\n")
    result = subprocess.run([sys.executable, str(script), str(run)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "trains pupper_v2, not pupper_v3 (pass --robot pupper_v2)" in result.stderr, result.stderr


def test_export_cli_names_a_missing_run(tmp_path):
    result = subprocess.run([sys.executable, "-m", "training.export", str(tmp_path / "nothing"), "-o", str(tmp_path / "x.onnx")],
                            capture_output=True, text=True)
    assert result.returncode == 1
    assert "no checkpoint at" in result.stderr


def test_sigterm_saves_a_checkpoint_and_exits_cleanly(tmp_path):
    import signal
    import time

    import yaml

    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(dict(TINY, steps=10**9, save_every=10**6)))
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "training.train", "--config", str(config), "--out", str(run), "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    progress = run / "progress.csv"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (progress.exists() and len(progress.read_text().splitlines()) > 2):
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "checkpoint saved" in err
    assert torch.load(run / "checkpoints" / "latest.pt", weights_only=False)["iteration"] >= 2


def test_robustness_evaluations_use_the_reference_ranges_and_a_fixed_latency():
    from training.config import load_config
    from training.evaluate import evaluation_config

    training = load_config().randomization
    reference = evaluation_config("pupper_v3", "pybullet", 10.0, latency=0.02, reference=True).randomization
    assert (reference.friction, reference.kp_scale, reference.kd_scale, reference.base_mass_scale) == (
        (0.6, 1.4), (0.6, 1.1), (0.8, 1.5), (0.9, 1.3))
    assert reference.latency_seconds == (0.02, 0.02)
    assert training.friction != reference.friction  # the default evaluation keeps the training config's ranges
    assert evaluation_config("pupper_v3", "pybullet", 10.0).randomization == training
    v2 = evaluation_config("pupper_v2", "mujoco", 10.0)
    assert v2.robot == "pupper_v2" and v2.env.engine == "mujoco" and v2.env.physics_dt == 0.0  # the profile's step


@pytest.mark.parametrize("engine", ["mujoco", pytest.param("pybullet", marks=pytest.mark.slow)])  # worker processes
def test_a_batched_run_writes_the_same_kind_of_run_and_exports(tmp_path, profile, engine):
    """`pupper-train --engine E --batched` trains on the batched environment (training/batch_env.py; MuJoCo's batch on
    the trainer's thread, PyBullet's in worker processes): the run directory, the progress log (with its count of
    robots reset for non-finite physics) and the export are as for the worker path."""
    out = tmp_path / "run"
    assert train_main(["--engine", engine, "--batched", "--envs", "16", "--steps", str(16 * 8 * 3), "--out", str(out), "--quiet",
                       "--config", str(_tiny_config(tmp_path))]) == 0
    lines = (out / "progress.csv").read_text().splitlines()
    assert lines[0].endswith(",checkpoint,nonfinite_resets,lost_rollouts") and len(lines) == 1 + 3
    assert [row.split(",")[-1] for row in lines[1:]] == ["0", "0", "0"]
    assert load_config(out / "config.yaml").env.batched
    assert export_checkpoint(out / "checkpoints" / "latest.pt", tmp_path / "p.onnx") < 1e-5
    load_policy(tmp_path / "p.onnx", profile)


def test_minutes_stops_the_run_with_a_checkpoint_and_says_how_far_it_got(tmp_path, capsys):
    out = tmp_path / "run"
    assert train_main(["--engine", "mujoco", "--batched", "--envs", "16", "--steps", "100000000", "--minutes", "0.001", "--out",
                       str(out), "--quiet", "--config", str(_tiny_config(tmp_path))]) == 0
    import re

    message = re.search(r"stopped after 0.001 min \(--minutes\) at iteration (\d+), ([\d,]+) env steps",
                        capsys.readouterr().err)
    assert message, "no stop message"
    state = torch.load(out / "checkpoints" / "latest.pt", weights_only=False)
    assert state["iteration"] == int(message[1]) and state["env_steps"] == int(message[2].replace(",", "")) < 100000000
    assert train_main(["--minutes", "0"]) == 2


@pytest.mark.parametrize("recipe", [None, "pupper_v3_walk_mujoco_batch.yaml"])  # a batch here; in a worker process
def test_more_robots_than_memory_holds_are_refused_before_anything_is_allocated(tmp_path, capsys, recipe):
    import multiprocessing

    from training.config import RECIPES

    config = ["--config", str(RECIPES / recipe)] if recipe else []
    assert train_main(config + ["--engine", "mujoco", "--batched", "--envs", "10000000", "--out", str(tmp_path / "run"),
                                "--quiet"]) == 2
    assert "10000000 robots need about 2500.0 GB" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
    assert not multiprocessing.active_children()


@pytest.mark.parametrize("engine, overlap, workers, processes", [
    ("mujoco", False, 0, 0),  # lockstep: the batch on the trainer's thread, on every core
    ("mujoco", True, 0, 1),  # overlapped: one worker process, off the trainer's GIL
    ("mujoco", True, 3, 3),
    ("pybullet", False, 0, os.cpu_count()),  # PyBullet steps in Python: a process per core
    ("pybullet", True, 1, 1),
])
def test_where_a_batched_run_collects(engine, overlap, workers, processes):
    from training.runner import batch_processes

    config = load_config(overrides={"workers": workers, "env": {"engine": engine, "batched": True},
                                    "ppo": {"overlap_update": overlap}})
    assert batch_processes(config) == processes
    config.env.batched = False
    assert batch_processes(config) == 0  # one environment per robot: the worker path, not batches


def _tiny_config(tmp_path):
    import yaml

    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump({k: v for k, v in TINY.items() if k not in ("envs", "workers", "steps")}))
    return path
