"""The ROS 2 shell around the runtime: the lifecycle node (``node.py``) with its telemetry and diagnostics
(``telemetry.py``), the ``pupper-walk`` command (``walk.py``) and its demo (``demo.py``), the operator's tools
(``teleop.py``, ``joy_teleop.py``, ``preflight.py``). The functional core it drives lives one level up."""
