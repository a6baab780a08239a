from pupper_ros.ros.teleop import SPEED_STEPS, YAW_PER_LINEAR, KeyState


def test_keys_map_to_commands_and_speed_steps():
    keys = KeyState()
    keys.press("w")
    assert keys.command == (SPEED_STEPS[1], 0, 0)
    keys.press("+")
    keys.press("\x1b[D")  # left arrow: turn left
    assert keys.command == (0, 0, SPEED_STEPS[2] * YAW_PER_LINEAR)
    keys.press("q")
    assert keys.command == (0, SPEED_STEPS[2], 0)
    keys.press(" ")
    assert keys.command == (0, 0, 0)
    for _ in range(10):
        keys.press("-")
    keys.press("s")
    assert keys.command == (-SPEED_STEPS[0], 0, 0)
    keys.press("x")
    assert keys.quit and keys.command == (0, 0, 0)
