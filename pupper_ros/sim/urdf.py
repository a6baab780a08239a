"""Reading the robot's URDF, and the edits a simulator needs before loading it.

PyBullet's own merging of fixed links (``URDF_MERGE_FIXED_LINKS``) drops each merged link's inertial origin: with
it the base's centre of mass sat at base_link's origin instead of 2.5 cm forward, and each lower leg's at the knee.
``merge_fixed_links`` does the merge here, keeping masses, centres of mass and inertia tensors exact.
PyBullet also turns a non-diagonal inertia tensor onto its principal axes without reporting the turn for the base
(the merged Pupper v3 base, ixz = -0.0005, then reported an orientation 4.7 degrees off base_link's in pitch);
``principal_inertials`` writes every tensor on its principal axes with the rotation in the inertial origin, which
PyBullet does report.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

ROTOR_SUFFIX = "_rotor"


def rpy_matrix(rpy) -> np.ndarray:
    """URDF's fixed-axis roll, pitch, yaw: R = Rz(yaw) Ry(pitch) Rx(roll)."""
    r, p, y = rpy
    cr, sr, cp, sp, cy, sy = np.cos(r), np.sin(r), np.cos(p), np.sin(p), np.cos(y), np.sin(y)
    return np.array([
        [cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr],
        [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr],
        [-sp, cp * sr, cp * cr],
    ])


def matrix_rpy(rot: np.ndarray) -> np.ndarray:
    pitch = np.arcsin(-np.clip(rot[2, 0], -1.0, 1.0))
    if abs(np.cos(pitch)) > 1e-9:
        return np.array([np.arctan2(rot[2, 1], rot[2, 2]), pitch, np.arctan2(rot[1, 0], rot[0, 0])])
    return np.array([np.arctan2(-rot[1, 2], rot[1, 1]), pitch, 0.0])


def _vector(text: str | None) -> np.ndarray:
    return np.array([float(v) for v in (text or "0 0 0").split()])


def origin_transform(element) -> tuple[np.ndarray, np.ndarray]:
    """(rotation, translation) of an element's ``<origin>`` (identity if it has none)."""
    origin = element.find("origin") if element is not None else None
    if origin is None:
        return np.eye(3), np.zeros(3)
    return rpy_matrix(_vector(origin.get("rpy"))), _vector(origin.get("xyz"))


def _set_origin(element, rot: np.ndarray, xyz: np.ndarray) -> None:
    origin = element.find("origin")
    if origin is None:
        origin = ET.Element("origin")
        element.insert(0, origin)
    origin.set("xyz", " ".join(repr(float(v)) for v in xyz))
    origin.set("rpy", " ".join(repr(float(v)) for v in matrix_rpy(rot)))


def inertial(link) -> tuple[float, np.ndarray, np.ndarray]:
    """(mass, centre of mass, inertia tensor about it), both in the link frame."""
    node = link.find("inertial")
    if node is None:
        return 0.0, np.zeros(3), np.zeros((3, 3))
    rot, xyz = origin_transform(node)
    i = node.find("inertia")
    tensor = np.array([
        [float(i.get("ixx", 0)), float(i.get("ixy", 0)), float(i.get("ixz", 0))],
        [float(i.get("ixy", 0)), float(i.get("iyy", 0)), float(i.get("iyz", 0))],
        [float(i.get("ixz", 0)), float(i.get("iyz", 0)), float(i.get("izz", 0))],
    ])
    return float(node.find("mass").get("value")), xyz, rot @ tensor @ rot.T


def combine_inertia(bodies) -> tuple[float, np.ndarray, np.ndarray]:
    """Mass, centre of mass and inertia about it of rigidly joined bodies given as (mass, com, tensor about com),
    all in one frame (the parallel-axis theorem)."""
    mass = sum(m for m, _, _ in bodies)
    com = sum(m * c for m, c, _ in bodies) / mass
    tensor = np.zeros((3, 3))
    for m, c, inertia in bodies:
        d = c - com
        tensor += inertia + m * (np.dot(d, d) * np.eye(3) - np.outer(d, d))
    return mass, com, tensor


_TENSOR_ENTRIES = {"ixx": (0, 0), "ixy": (0, 1), "ixz": (0, 2), "iyy": (1, 1), "iyz": (1, 2), "izz": (2, 2)}


def _write_inertial(link, mass: float, com: np.ndarray, tensor: np.ndarray, axes: np.ndarray | None = None) -> None:
    """Write an inertial: ``tensor`` about ``com``, expressed in the frame whose axes are the columns of ``axes``
    (the link frame's if None)."""
    node = link.find("inertial")
    if node is None:
        node = ET.SubElement(link, "inertial")
    for child in list(node):
        node.remove(child)
    rpy = matrix_rpy(axes) if axes is not None else np.zeros(3)
    ET.SubElement(node, "origin", xyz=" ".join(repr(float(v)) for v in com), rpy=" ".join(repr(float(v)) for v in rpy))
    ET.SubElement(node, "mass", value=repr(float(mass)))
    ET.SubElement(node, "inertia", **{name: repr(float(tensor[a, b])) for name, (a, b) in _TENSOR_ENTRIES.items()})


def merge_fixed_links(root) -> dict[str, tuple[str, np.ndarray, np.ndarray]]:
    """Fold every link attached by a fixed joint into its parent, in place: mass and inertia combined exactly,
    collision and visual shapes moved with their offsets. Returns, per removed link, (the link it now belongs to,
    rotation and translation of its frame in that link's frame)."""
    links = {link.get("name"): link for link in root.findall("link")}
    moved: dict[str, tuple[str, np.ndarray, np.ndarray]] = {}
    while (joint := next((j for j in root.findall("joint") if j.get("type") == "fixed"), None)) is not None:
        parent, child = links[joint.find("parent").get("link")], links[joint.find("child").get("link")]
        rot, xyz = origin_transform(joint)
        m1, c1, i1 = inertial(parent)
        m2, c2, i2 = inertial(child)
        if m2 > 0:
            mass, com, tensor = combine_inertia([(m1, c1, i1), (m2, rot @ c2 + xyz, rot @ i2 @ rot.T)])
            _write_inertial(parent, mass, com, tensor)
        for shape in child.findall("collision") + child.findall("visual"):
            shape_rot, shape_xyz = origin_transform(shape)
            _set_origin(shape, rot @ shape_rot, rot @ shape_xyz + xyz)
            parent.append(shape)
        for other in root.findall("joint"):  # the child's own children now hang from the parent
            if other.find("parent").get("link") == child.get("name"):
                other.find("parent").set("link", parent.get("name"))
                other_rot, other_xyz = origin_transform(other)
                _set_origin(other, rot @ other_rot, rot @ other_xyz + xyz)
        for name, (owner, r, t) in list(moved.items()):
            if owner == child.get("name"):
                moved[name] = (parent.get("name"), rot @ r, rot @ t + xyz)
        moved[child.get("name")] = (parent.get("name"), rot, xyz)
        root.remove(joint)
        root.remove(child)
        del links[child.get("name")]
    return moved


def principal_inertials(root) -> None:
    """Every link's inertia written on its principal axes (the rotation in the inertial origin), in place."""
    for link in root.findall("link"):
        if link.find("inertial") is None:
            continue
        mass, com, tensor = inertial(link)
        moments, axes = np.linalg.eigh(tensor)
        if np.linalg.det(axes) < 0:
            axes[:, 0] = -axes[:, 0]
        _write_inertial(link, mass, com, np.diag(moments), axes)


ROTOR_MASS = 1e-4  # kg: a rotor is a spinning inertia; its mass is part of the link that holds it


def add_rotors(root, armature: float, ratio: float) -> None:
    """A rotor link per actuated joint, in place: a child of the joint's parent on a continuous joint at the same
    origin and axis, with inertia armature / ratio^2 about that axis. What the rotors weigh and their inertia are
    taken out of the links that hold them, so the robot's mass distribution stays the URDF's."""
    spin = armature / ratio**2
    links = {link.get("name"): link for link in root.findall("link")}
    for joint in [j for j in root.findall("joint") if j.get("type") == "revolute"]:
        axis = _vector(joint.find("axis").get("xyz", "1 0 0"))
        if not np.allclose(np.abs(axis), [0, 0, 1]):
            raise ValueError(f"joint {joint.get('name')}: rotors need the joint axis on its frame's z, not {axis}")
        name = joint.get("name") + ROTOR_SUFFIX
        rotor_tensor = np.diag([spin / 2, spin / 2, spin])
        link = ET.SubElement(root, "link", name=name)
        _write_inertial(link, ROTOR_MASS, np.zeros(3), rotor_tensor)
        rotor_joint = ET.SubElement(root, "joint", name=name, type="continuous")
        parent = joint.find("parent").get("link")
        ET.SubElement(rotor_joint, "parent", link=parent)
        ET.SubElement(rotor_joint, "child", link=name)
        rot, xyz = origin_transform(joint)
        _set_origin(rotor_joint, rot, xyz)
        ET.SubElement(rotor_joint, "axis", xyz=" ".join(repr(float(v)) for v in axis))
        holder = links[parent]
        mass, com, tensor = combine_inertia([inertial(holder), (-ROTOR_MASS, xyz, -(rot @ rotor_tensor @ rot.T))])
        if mass <= 0 or np.any(np.linalg.eigvalsh(tensor) <= 0):
            raise ValueError(f"link {parent} is too light to hold the rotor of {joint.get('name')}")
        _write_inertial(holder, mass, com, tensor)


def add_armature_to_links(root, armature: float) -> None:
    """Each actuated joint's rotor inertia added to its child link's inertia tensor, in place, as a thin disc about
    the joint axis (izz += a, ixx and iyy += a / 2; joint axes are the child frames' z). This makes every motion of
    the link heavier, not only the joint's: the robot becomes harder to tip than its URDF."""
    actuated = {j.find("child").get("link") for j in root.findall("joint") if j.get("type") == "revolute"}
    for link in root.findall("link"):
        inertia = link.find("inertial/inertia")
        if link.get("name") in actuated and inertia is not None:
            for axis, share in (("izz", 1.0), ("ixx", 0.5), ("iyy", 0.5)):
                inertia.set(axis, repr(float(inertia.get(axis)) + share * armature))


def parse(urdf_path: Path):
    return ET.parse(urdf_path).getroot()


def to_text(root) -> str:
    return ET.tostring(root, encoding="unicode")


def sphere_radius(urdf_path: Path, link: str) -> float:
    for node in parse(urdf_path).findall("link"):
        if node.get("name") == link:
            sphere = node.find("collision/geometry/sphere")
            if sphere is not None:
                return float(sphere.get("radius"))
    raise ValueError(f"{urdf_path}: foot link {link} has no sphere collision")


def _axis_rotation(axis: np.ndarray, angle: float) -> np.ndarray:
    axis = axis / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


def link_poses(root, joint_positions: dict[str, float]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each link's frame (rotation, translation) in the root link's frame at these joint positions."""
    joints = {j.find("child").get("link"): j for j in root.findall("joint")}
    poses: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def pose(link: str):
        if link not in poses:
            joint = joints.get(link)
            if joint is None:
                poses[link] = (np.eye(3), np.zeros(3))
            else:
                parent_rot, parent_xyz = pose(joint.find("parent").get("link"))
                rot, xyz = origin_transform(joint)
                if joint.get("type") in ("revolute", "continuous"):
                    rot = rot @ _axis_rotation(_vector(joint.find("axis").get("xyz")), joint_positions.get(joint.get("name"), 0.0))
                poses[link] = (parent_rot @ rot, parent_rot @ xyz + parent_xyz)
        return poses[link]

    for link in root.findall("link"):
        pose(link.get("name"))
    return poses


def composite_inertia(root, joint_positions: dict[str, float]) -> tuple[float, np.ndarray, np.ndarray]:
    """The whole robot's mass, centre of mass and inertia about it, in the root link's frame, from the URDF."""
    poses = link_poses(root, joint_positions)
    bodies = []
    for link in root.findall("link"):
        mass, com, tensor = inertial(link)
        if mass > 0:
            rot, xyz = poses[link.get("name")]
            bodies.append((mass, rot @ com + xyz, rot @ tensor @ rot.T))
    return combine_inertia(bodies)
