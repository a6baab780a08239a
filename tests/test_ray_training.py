"""`pupper-train --ray`: batches of robots (MuJoCo's, PyBullet's) as Ray actors on a real Ray cluster of two nodes on this machine
(``ray.cluster_utils.Cluster``: a head and a worker node, each its own raylet and object store; no network beyond
loopback). A run through Ray leaves the same run directory as a local one and resumes either way; an actor lost with
its node is replaced and the run goes on; the refusals name what was wrong."""

import csv
import subprocess
import sys
import time

import pytest
import torch
import yaml

from training.train import main as train_main

ROBOTS, STEPS_PER_ENV = 8, 6
TINY = {"env": {"engine": "mujoco"}, "save_every": 2,
        "ppo": {"steps_per_env": STEPS_PER_ENV, "mini_batches": 2, "learning_epochs": 1},
        "policy": {"actor_hidden": [32, 32], "critic_hidden": [32, 32]}}


def _recipe(tmp_path):
    path = tmp_path / "tiny_mujoco.yaml"
    path.write_text(yaml.safe_dump(TINY))
    return path


def _steps(iterations: int) -> str:
    return str(ROBOTS * STEPS_PER_ENV * iterations)


def _run_shape(run):
    """What a run directory holds, without what differs by machine or time: its files (tensorboard's event file
    by its directory only) and the progress log's rows."""
    files = sorted(str(p.relative_to(run)) for p in run.rglob("*") if p.is_file() and "tensorboard" not in p.parts)
    rows = list(csv.reader((run / "progress.csv").open()))
    return files, rows[0], [row[0] for row in rows[1:]]


def _progress(run):
    return list(csv.DictReader((run / "progress.csv").open()))


def test_ray_without_ray_installed_is_refused_naming_the_extra(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # what an install without the extra sees: import ray fails
    assert train_main(["--ray", "--engine", "mujoco", "--out", str(tmp_path / "run")]) == 2
    assert "pupper_ros[ray]" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_ray_actors_without_ray_are_refused(tmp_path, capsys):
    assert train_main(["--ray-actors", "2", "--out", str(tmp_path / "run")]) == 2
    assert "--ray-actors needs --ray" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


@pytest.fixture
def cluster():
    """A head node and a worker node of one logical CPU each, on this machine: two actors of one CPU each can only be
    placed one on each node."""
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    worker = cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    yield cluster, worker
    if ray.is_initialized():
        ray.shutdown()
    cluster.shutdown()


def _train_through_ray(address, run, recipe, iterations, resume=False, engine="mujoco"):
    command = [sys.executable, "-m", "training.train", "--config", str(recipe), "--envs", str(ROBOTS), "--steps",
               _steps(iterations), "--ray", address, "--ray-actors", "2", "--engine", engine, "--quiet"]
    command += ["--resume", str(run)] if resume else ["--out", str(run)]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow  # a Ray cluster, trains
def test_a_run_through_ray_is_a_local_run_and_resumes_either_way(cluster, tmp_path):
    """Same files, same progress columns and iterations as `--batched` on this machine; the Ray run resumes locally
    and the local run through Ray, each going on from its checkpoint."""
    ray_cluster, _ = cluster
    recipe = _recipe(tmp_path)
    through_ray, local = tmp_path / "ray", tmp_path / "local"
    proc = _train_through_ray(ray_cluster.address, through_ray, recipe, 4)
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err
    assert train_main(["--config", str(recipe), "--envs", str(ROBOTS), "--steps", _steps(4), "--batched", "--out",
                       str(local), "--quiet"]) == 0
    assert _run_shape(through_ray) == _run_shape(local)
    assert [row["lost_rollouts"] for row in _progress(through_ray)] == ["0"] * 4
    assert yaml.safe_load((through_ray / "config.yaml").read_text()) == yaml.safe_load((local / "config.yaml").read_text())

    assert train_main(["--resume", str(through_ray), "--steps", _steps(6), "--quiet"]) == 0  # Ray -> local
    proc = _train_through_ray(ray_cluster.address, local, recipe, 6, resume=True)  # local -> Ray
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err
    for run in (through_ray, local):
        state = torch.load(run / "checkpoints" / "latest.pt", weights_only=False)
        assert (state["iteration"], state["env_steps"]) == (6, ROBOTS * STEPS_PER_ENV * 6)
        assert [row["iteration"] for row in _progress(run)] == [str(i) for i in range(1, 7)]


@pytest.mark.slow  # a Ray cluster, trains
def test_pybullet_batches_train_through_ray(cluster, tmp_path):
    """The project's default engine on the actors (4 robots each, each robot a PyBullet world of its own): the run
    logs and checkpoints every iteration as a local run does, with no rollout lost."""
    ray_cluster, _ = cluster
    run = tmp_path / "pybullet"
    proc = _train_through_ray(ray_cluster.address, run, _recipe(tmp_path), 2, engine="pybullet")
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err
    assert yaml.safe_load((run / "config.yaml").read_text())["env"]["engine"] == "pybullet"
    assert [(row["iteration"], row["env_steps"], row["lost_rollouts"]) for row in _progress(run)] == [
        (str(i), _steps(i), "0") for i in (1, 2)]
    state = torch.load(run / "checkpoints" / "latest.pt", weights_only=False)
    assert (state["iteration"], state["env_steps"]) == (2, ROBOTS * STEPS_PER_ENV * 2)


@pytest.mark.slow  # a Ray cluster, trains
def test_an_actor_lost_with_its_node_is_replaced_and_the_run_goes_on(cluster, tmp_path):
    """The worker node is removed while the run trains (a spare node having joined): the actor on it dies with it, a
    replacement starts on the spare and collects the lost share of the rollout again, the progress log counts the
    lost rollout, and iterations go on being logged until the run is stopped (SIGTERM: a checkpoint and exit 0)."""
    import signal

    ray_cluster, worker = cluster
    run = tmp_path / "run"
    proc = _train_through_ray(ray_cluster.address, run, _recipe(tmp_path), 10**6)  # runs until stopped

    def wait_for(condition, what):
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not condition():
            assert proc.poll() is None, proc.communicate()[1]
            time.sleep(0.2)
        assert condition(), f"not within 120 s: {what}"

    try:
        wait_for(lambda: (run / "progress.csv").exists() and len(_progress(run)) >= 3, "3 iterations")
        ray_cluster.add_node(num_cpus=1)
        ray_cluster.wait_for_nodes()
        ray_cluster.remove_node(worker)
        wait_for(lambda: int(_progress(run)[-1]["lost_rollouts"]) >= 1, "a lost rollout in the progress log")
        lost_at = len(_progress(run))
        wait_for(lambda: len(_progress(run)) >= lost_at + 3, "3 iterations after the loss")
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    rows = _progress(run)
    assert [row["iteration"] for row in rows] == [str(i) for i in range(1, len(rows) + 1)]
    assert torch.load(run / "checkpoints" / "latest.pt", weights_only=False)["iteration"] >= lost_at + 3


@pytest.mark.slow  # a Ray cluster
def test_more_actors_than_the_cluster_has_cpus_are_refused_before_a_run_directory_exists(cluster, tmp_path):
    ray_cluster, _ = cluster
    command = [sys.executable, "-m", "training.train", "--config", str(_recipe(tmp_path)), "--envs", str(ROBOTS),
               "--ray", ray_cluster.address, "--ray-actors", "3", "--out", str(tmp_path / "run"), "--quiet"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert "--ray-actors 3: each actor takes one CPU and the cluster has 2" in result.stderr
    assert not (tmp_path / "run").exists()
