"""Loading and validating robot profiles: each bad profile is refused with a message naming the field."""

import copy

import pytest
import yaml

from pupper_ros import resources
from pupper_ros.robot_profile import ProfileError, load_robot_profile


@pytest.fixture(scope="module")
def raw():
    return yaml.safe_load(resources.robot_profile_path("pupper_v3").read_text())


def write(tmp_path, raw):
    data = copy.deepcopy(raw)
    data["urdf"] = str(resources.robots_dir() / raw["urdf"])
    path = tmp_path / "robot.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_shipped_profile_loads(profile):
    assert profile.name == "pupper_v3"
    assert profile.num_joints == 12
    assert profile.default_pose.shape == (12,)
    assert profile.urdf_path.is_file()


def test_loads_from_a_path(tmp_path, raw):
    assert load_robot_profile(write(tmp_path, raw)).joints == tuple(raw["joints"])


def test_unknown_robot_names_the_shipped_ones():
    with pytest.raises(ProfileError, match=r"unknown robot 'pupper_v9'.*pupper_v3"):
        load_robot_profile("pupper_v9")


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda r: r.pop("gains"), r"missing field\(s\) gains"),
        (lambda r: r.update(colour="red"), r"unknown field\(s\) colour"),
        (lambda r: r["default_pose"].pop(), r"'default_pose' must be 12 finite numbers"),
        (lambda r: r["joints"].__setitem__(1, r["joints"][0]), r"distinct names"),
        (lambda r: r["position_limits"]["lower"].__setitem__(2, 5.0), r"lower >= upper for leg_front_r_3"),
        (lambda r: r["default_pose"].__setitem__(0, 2.45), r"default_pose outside position_limits for leg_front_r_1"),
        (lambda r: r["gains"].update(kp=12.0), r"exceed gain_limits"),
        (lambda r: r.update(torque_limit=-1), r"'torque_limit' must be a positive number"),
        (lambda r: r["command_ranges"].update(vx=[0.5, -0.5]), r"command range"),
        (lambda r: r.update(urdf="nowhere.urdf"), r"urdf .*nowhere.urdf not found"),
        (lambda r: r["actuator"].update(gear_ratio=0), r"'actuator.gear_ratio' must be a positive number"),
        (lambda r: r["actuator"].update(gearing=10), r"actuator: unknown key\(s\) gearing"),
    ],
)
def test_bad_profile_is_refused(tmp_path, raw, mutate, message):
    data = copy.deepcopy(raw)
    mutate(data)
    path = tmp_path / "robot.yaml"
    if data.get("urdf") != "nowhere.urdf":
        data["urdf"] = str(resources.robots_dir() / raw["urdf"])
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ProfileError, match=message):
        load_robot_profile(path)
