"""The wire format: every command payload, every feedback payload, bad input."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bt_sorter import protocol as p


@pytest.mark.parametrize(
    ("command", "payload"),
    [
        (p.push(1), {"rod_control": "first_push"}),
        (p.pull(1), {"rod_control": "first_pull"}),
        (p.push(2), {"rod_control": "second_push"}),
        (p.pull(3), {"rod_control": "third_pull"}),
        (p.push(4), {"rod_control": "fourth_push"}),
        (p.push(0), {"rod_control": "all_push"}),
        (p.ALL_PULL, {"rod_control": "all_pull"}),
        (p.BELT_RUN, {"conveyor": "run"}),
        (p.BELT_STOP, {"conveyor": "stop"}),
    ],
)
def test_commands_match_the_course_protocol(command: p.Command, payload: dict[str, str]) -> None:
    assert json.loads(p.encode_command(command)) == payload
    assert p.parse_command(p.encode_command(command)) == command


@pytest.mark.parametrize("spelling", [b'{"second_switch": true}', b'{"second_switch": True}'])
def test_gate_edges_accept_json_and_python_booleans(spelling: bytes) -> None:
    assert p.parse_feedback(spelling) == [p.GateEdge(2, True)]


def test_gate_payloads_round_trip() -> None:
    for gate in (1, 2, 3):
        for blocked in (True, False):
            assert p.parse_feedback(p.encode_gate(gate, blocked)) == [p.GateEdge(gate, blocked)]


def test_picture_round_trips_as_bytes() -> None:
    jpeg = b"\xff\xd8\xff\xe0" + bytes(range(256))
    assert p.parse_feedback(p.encode_picture(jpeg)) == [p.Picture(jpeg)]


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"not json", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"first_switch": "yes"}', "must be a boolean"),
        (b'{"twelfth_switch": true}', "unknown key"),
        (b'{"image": 5}', "base64 string"),
        (b'{"image": "%%%"}', "not valid base64"),
        (b'{"image": "' + base64.b64encode(b"GIF89a") + b'"}', "neither JPEG nor PNG"),
        (b"\xff\xfe", "not UTF-8"),
        (b"[" * 100_000, "nested too deeply"),
        (b"{}", "empty object"),
    ],
)
def test_bad_feedback_becomes_bad_input_with_a_reason(payload: bytes, reason: str) -> None:
    events = p.parse_feedback(payload)
    assert len(events) == 1
    assert isinstance(events[0], p.BadInput)
    assert reason in events[0].reason


def test_a_bad_key_does_not_hide_a_good_one() -> None:
    events = p.parse_feedback(b'{"first_switch": false, "colour": 3}')
    assert events[0] == p.GateEdge(1, False)
    assert isinstance(events[1], p.BadInput)


@pytest.mark.parametrize(
    "payload",
    [b"{}", b'{"rod_control": "thirteenth_push"}', b'{"conveyor": 1}', b'{"belt": "run"}', b"x"],
)
def test_bad_commands_are_bad_input(payload: bytes) -> None:
    assert isinstance(p.parse_command(payload), p.BadInput)


@given(st.binary(max_size=2048))
def test_any_bytes_on_the_feedback_topic_parse_to_events_never_an_exception(data: bytes) -> None:
    events = p.parse_feedback(data)
    assert events
    assert all(isinstance(e, p.GateEdge | p.Picture | p.BadInput) for e in events)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner),
    max_leaves=12,
)


@given(st.dictionaries(st.sampled_from([*p.GATE_KEYS, "image", "other"]), json_values))
def test_any_json_object_on_the_feedback_topic_gives_one_event_per_key(obj: dict) -> None:
    events = p.parse_feedback(json.dumps(obj).encode())
    assert len(events) == max(1, len(obj))
    for key, event in zip(obj, events, strict=False):
        if isinstance(event, p.GateEdge):
            assert obj[key] is event.blocked


@given(st.binary(max_size=512))
def test_any_bytes_on_the_command_topic_parse_to_a_command_or_bad_input(data: bytes) -> None:
    assert isinstance(p.parse_command(data), p.Command | p.BadInput)
