"""The ONNX policy file: export parity with torch, and one refusal per way a file can be wrong."""

import json
import os
import stat

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from pupper_ros.contract import CURRENT_CONTRACT
from pupper_ros.policy import METADATA_KEY, PolicyLoadError, load_policy
from tests.policies import tiny_network, write_policy
from training.export import ExportParityError, export_policy


@pytest.fixture(scope="module")
def good_policy(tmp_path_factory, profile):
    return write_policy(tmp_path_factory.mktemp("policy") / "good.onnx", profile)


def rewrite(src, dst, edit):
    model = onnx.load_model(str(src))
    edit(model)
    onnx.save_model(model, str(dst))
    return dst


def set_metadata(model, value: str | None):
    del model.metadata_props[:]
    if value is not None:
        entry = model.metadata_props.add()
        entry.key, entry.value = METADATA_KEY, value


def edit_metadata(**changes):
    def edit(model):
        meta = json.loads(next(p.value for p in model.metadata_props if p.key == METADATA_KEY))
        for key, value in changes.items():
            if callable(value):
                value(meta)
            else:
                meta[key] = value
        set_metadata(model, json.dumps(meta))
    return edit


def test_export_matches_torch_in_onnxruntime(tmp_path, profile):
    network = tiny_network(seed=3)
    path = write_policy(tmp_path / "p.onnx", profile, network)
    policy = load_policy(path, profile)
    rng = np.random.default_rng(1)
    obs = rng.normal(0, 2, size=(200, CURRENT_CONTRACT.observation_size)).astype(np.float32)
    with torch.no_grad():
        expected = network(torch.from_numpy(obs)).numpy()
    assert np.max(np.abs(policy.run_batch(obs) - expected)) < 1e-5
    assert np.max(np.abs(policy(obs[0]) - expected[0])) < 1e-5
    assert policy.info.robot == "pupper_v3"
    assert policy.info.provenance["seed"] == 0


def test_exported_file_is_readable_by_other_users(tmp_path, profile):
    # the systemd unit runs the daemon as its own user; a 0600 file (mkstemp's mode) would fail to load there
    old = os.umask(0o022)
    try:
        path = write_policy(tmp_path / "p.onnx", profile, tiny_network(seed=3))
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_exporter_refuses_a_model_that_disagrees_with_torch(tmp_path, profile):
    class Nondeterministic(torch.nn.Module):
        # Different outputs on every call, so no export can match torch.
        def forward(self, obs):
            return obs[:, :12] + torch.rand(obs.shape[0], 12)

    with pytest.raises(ExportParityError, match="not written"):
        from tests.policies import metadata_for
        export_policy(Nondeterministic(), CURRENT_CONTRACT.observation_size, tmp_path / "bad.onnx", metadata_for(profile))
    assert not (tmp_path / "bad.onnx").exists()


def test_refuses_missing_file(tmp_path, profile):
    with pytest.raises(PolicyLoadError, match="file not found"):
        load_policy(tmp_path / "absent.onnx", profile)


def test_refuses_a_file_that_is_not_onnx(tmp_path, profile):
    path = tmp_path / "notes.onnx"
    path.write_text("this is not a model\n" * 10)
    with pytest.raises(PolicyLoadError, match="not a valid ONNX model"):
        load_policy(path, profile)


def test_refuses_wrong_input_width(tmp_path, profile):
    path = write_policy(tmp_path / "wide.onnx", profile, inputs=CURRENT_CONTRACT.observation_size + 3)
    with pytest.raises(PolicyLoadError, match=r"input 'obs' has shape .*50.*needs \[batch, 47\]"):
        load_policy(path, profile)


def test_refuses_wrong_output_width(tmp_path, profile):
    path = write_policy(tmp_path / "narrow.onnx", profile, tiny_network(outputs=10))
    with pytest.raises(PolicyLoadError, match=r"output 'actions' has shape .*10.*needs \[batch, 12\]"):
        load_policy(path, profile)


def test_refuses_missing_metadata(tmp_path, good_policy, profile):
    path = rewrite(good_policy, tmp_path / "bare.onnx", lambda m: set_metadata(m, None))
    with pytest.raises(PolicyLoadError, match=f"no '{METADATA_KEY}' entry"):
        load_policy(path, profile)


def test_refuses_metadata_that_is_not_json(tmp_path, good_policy, profile):
    path = rewrite(good_policy, tmp_path / "garbled.onnx", lambda m: set_metadata(m, "{robot: pupper"))
    with pytest.raises(PolicyLoadError, match="is not valid JSON"):
        load_policy(path, profile)


def test_refuses_metadata_missing_a_field(tmp_path, good_policy, profile):
    path = rewrite(good_policy, tmp_path / "partial.onnx", edit_metadata(drop=lambda m: m.pop("joints")))
    with pytest.raises(PolicyLoadError, match=r"metadata lacks field\(s\) joints"):
        load_policy(path, profile)


def test_refuses_an_unknown_contract_version(tmp_path, good_policy, profile):
    path = rewrite(good_policy, tmp_path / "future.onnx", edit_metadata(v=lambda m: m["contract"].update(version=99)))
    with pytest.raises(PolicyLoadError, match=r"contract version 99 is unknown; this pupper_ros knows version\(s\) \[1\]"):
        load_policy(path, profile)


def test_refuses_a_changed_contract_under_a_known_version(tmp_path, good_policy, profile):
    path = rewrite(good_policy, tmp_path / "rescaled.onnx",
                   edit_metadata(a=lambda m: m["contract"]["action"].update(scale=0.25)))
    with pytest.raises(PolicyLoadError, match=r"field 'action' differs from its definition"):
        load_policy(path, profile)


def test_refuses_a_model_for_another_robot(tmp_path, good_policy, profile):
    path = rewrite(good_policy, tmp_path / "v2.onnx", edit_metadata(robot="pupper_v2"))
    with pytest.raises(PolicyLoadError, match="model is for robot 'pupper_v2', this robot is 'pupper_v3'"):
        load_policy(path, profile)


def test_refuses_a_different_joint_order(tmp_path, good_policy, profile):
    swapped = list(profile.joints)
    swapped[3], swapped[4] = swapped[4], swapped[3]
    path = rewrite(good_policy, tmp_path / "swapped.onnx", edit_metadata(joints=swapped))
    with pytest.raises(PolicyLoadError, match="joint order differs .* at index 3: model has 'leg_front_l_2', robot has 'leg_front_l_1'"):
        load_policy(path, profile)


def test_refuses_different_gains(tmp_path, good_policy, profile):
    path = rewrite(good_policy, tmp_path / "stiff.onnx", edit_metadata(kp=8.0))
    with pytest.raises(PolicyLoadError, match="trained with kp 8.0, robot pupper_v3 runs kp 5.0"):
        load_policy(path, profile)


def test_refuses_non_finite_weights(tmp_path, good_policy, profile):
    def poison(model):
        init = next(i for i in model.graph.initializer if numpy_helper.to_array(i).ndim == 2)
        values = numpy_helper.to_array(init).copy()
        values.flat[5] = np.nan
        init.CopyFrom(numpy_helper.from_array(values, init.name))
        poison.name = init.name

    path = rewrite(good_policy, tmp_path / "nan.onnx", poison)
    with pytest.raises(PolicyLoadError, match=f"weight '{poison.name}' has 1 non-finite value"):
        load_policy(path, profile)
