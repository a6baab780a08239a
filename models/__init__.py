"""Shipped ONNX policies and their training reports; installed as the package data ``pupper_ros.models``."""
