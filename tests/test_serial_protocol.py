"""The serial protocol: encoding, incremental decoding, resynchronisation, validation, and a fuzz of the decoder."""

import math
import random
import struct

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pupper_ros.serial_protocol import (
    MAX_HOST_PAYLOAD,
    ProtocolError,
    StatusDecoder,
    encode_host_frame,
    encode_status_frame,
    validate_status,
)


def status(**changes):
    fields = {"ts": 1234, "yaw": 0.1, "pitch": -0.2, "roll": 0.05, "yaw_rate": 0.0, "pitch_rate": 0.1, "roll_rate": -0.1,
              "pos": [0.1 * i for i in range(12)], "vel": [0.0] * 12, "mode": 3}
    fields.update(changes)
    return fields


def test_host_frame_layout():
    frame = encode_host_frame({"pos": [0.5] * 12, "kp": 2.0})
    assert frame[0] == 0x00 and frame[1] == len(frame) - 2
    decoded = msgpack.unpackb(frame[2:])
    assert decoded["kp"] == 2.0 and decoded["pos"] == [0.5] * 12
    assert b"\xca" in frame  # msgpack float32 marker: single precision on the wire


def test_host_frame_too_long_is_refused():
    with pytest.raises(ProtocolError, match=f"allows {MAX_HOST_PAYLOAD}"):
        encode_host_frame({"pos": [0.1] * 100})


def test_status_round_trip_in_single_bytes():
    decoder = StatusDecoder()
    wire = encode_status_frame(status()) * 3
    frames = []
    for i in range(len(wire)):
        frames += decoder.feed(wire[i:i + 1])
    assert len(frames) == 3 and decoder.dropped == 0
    assert frames[0].pos[5] == pytest.approx(0.5) and frames[0].mode == 3


def test_resynchronises_after_garbage():
    decoder = StatusDecoder()
    frames = decoder.feed(b"\x01\x02garbageE" + encode_status_frame(status()) + b"EEzz" + encode_status_frame(status(ts=2)))
    assert [f.ts for f in frames] == [1234, 2]
    assert decoder.resyncs >= 1


@pytest.mark.parametrize(
    "wire, reason",
    [
        (b"EE" + struct.pack(">H", 60000) + b"x" * 10, "length 60000 out of bounds"),
        (b"EE" + struct.pack(">H", 0), "length 0 out of bounds"),
        (b"EE\x00\x05\xc1\xc1\xc1\xc1\xc1", "invalid msgpack"),
        (encode_status_frame({k: v for k, v in status().items() if k != "vel"}), "missing vel"),
        (encode_status_frame(status(pos=[0.0] * 11)), "pos must be 12 numbers"),
        (encode_status_frame(status(vel=[math.nan] + [0.0] * 11)), "vel has a non-finite"),
        (encode_status_frame(status(pos=[1e9] * 12)), "pos has a non-finite or implausible"),
        (encode_status_frame(status(roll=math.inf)), "roll is not a plausible number"),
        (encode_status_frame(status(mode=9)), "mode must be"),
        (encode_status_frame([1, 2, 3]), "payload is not a map"),
    ],
)
def test_bad_frame_is_dropped_and_counted_then_the_next_good_one_decodes(wire, reason):
    decoder = StatusDecoder()
    frames = decoder.feed(wire + encode_status_frame(status(ts=7)))
    assert [f.ts for f in frames] == [7]
    assert decoder.dropped >= 1
    assert any(reason in why for why in decoder.drop_reasons), decoder.drop_reasons


def test_truncated_frame_waits_then_is_dropped_when_garbage_follows():
    decoder = StatusDecoder()
    good = encode_status_frame(status())
    assert decoder.feed(good[:-10]) == []
    frames = decoder.feed(encode_status_frame(status(ts=9)) * 2)
    assert frames and frames[-1].ts == 9  # the truncated one never yields a frame with someone else's bytes
    assert decoder.frames == len(frames)


def test_buffer_stays_bounded_under_endless_garbage():
    decoder = StatusDecoder()
    for _ in range(1000):
        decoder.feed(b"\x00\x01\x02" * 100)
    assert len(decoder._buffer) <= 4


# --- fuzz -----------------------------------------------------------------------------------------------------
def _frame_any_precision(fields):
    payload = msgpack.packb(fields)  # doubles: the fuzz needs values single precision cannot hold
    return b"EE" + struct.pack(">H", len(payload)) + payload


fragments = st.one_of(
    st.binary(max_size=64),
    st.builds(lambda f: _frame_any_precision(f), st.fixed_dictionaries({}, optional={
        k: st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-2**40, 2**40), st.text(max_size=3),
                     st.lists(st.floats(allow_nan=True), max_size=13), st.none())
        for k in ("ts", "yaw", "pitch", "roll", "yaw_rate", "pitch_rate", "roll_rate", "pos", "vel", "mode", "cur")})),
    st.just(encode_status_frame(status())),
    st.builds(lambda n: b"EE" + struct.pack(">H", n), st.integers(0, 65535)),
)


def _feed_and_check(wire: bytes, split: int) -> int:
    decoder = StatusDecoder()
    yielded = 0
    for i in range(0, len(wire), split):
        for frame in decoder.feed(wire[i:i + split]):
            fields = {k: v for k, v in frame.__dict__.items() if v is not None}
            assert validate_status(fields)[0] is not None
            yielded += 1
    assert len(decoder._buffer) <= 4 + decoder.max_payload
    return yielded


@settings(max_examples=3000, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(pieces=st.lists(fragments, max_size=6), split=st.integers(1, 64))
def test_decoder_property_never_raises_and_only_yields_valid_frames(pieces, split):
    """3000 hypothesis streams (it shrinks a failure to a minimal one): random bytes, well-formed and malformed
    frames, bare headers with any length, cut into chunks of a random size."""
    _feed_and_check(b"".join(pieces), split)


def _random_fragment(rng: random.Random) -> bytes:
    kind = rng.randrange(6)
    if kind == 0:
        return rng.randbytes(rng.randrange(65))
    if kind == 1:
        return encode_status_frame(status(ts=rng.randrange(10**6)))
    if kind == 2:
        return b"EE" + struct.pack(">H", rng.randrange(65536))
    good = bytearray(encode_status_frame(status()))
    if kind == 3:  # flip bytes inside a good frame
        for _ in range(rng.randrange(1, 4)):
            good[rng.randrange(len(good))] = rng.randrange(256)
        return bytes(good)
    if kind == 4:  # cut a good frame short
        return bytes(good[: rng.randrange(len(good))])
    fields = status()  # a well-formed map with one field made wrong
    key = rng.choice(list(fields))
    fields[key] = rng.choice([math.nan, math.inf, -1e30, "x", None, [1.0] * rng.randrange(20), {"a": 1}, True, 2**60])
    return _frame_any_precision(fields)


@pytest.mark.slow
def test_decoder_fuzz_100000_random_streams():
    """100 000 seeded random streams of up to 5 fragments (random bytes, good frames, bare headers with random
    lengths, good frames with flipped bytes, truncated frames, maps with one bad field), fed in random chunk sizes.
    The decoder must never raise, never yield a frame that fails validation, and keep its buffer bounded."""
    rng = random.Random(20261125)
    yielded = 0
    for _ in range(100_000):
        wire = b"".join(_random_fragment(rng) for _ in range(rng.randrange(1, 6)))
        yielded += _feed_and_check(wire, rng.randrange(1, 80))
    assert yielded > 10_000  # the good frames among the garbage were found
