"""Training for pupper_ros: the PyBullet Pupper environment, PPO (rsl-rl-lib) and the ONNX exporter."""
