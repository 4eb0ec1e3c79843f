"""The `trackd-signature` of run events (pure): what it covers, and that a key is needed to make it."""

from __future__ import annotations

from trackd_platform.kafka import RUN_ENDED, RUN_STARTED, SIGNATURE_HEADER, Event, authentic, signature


def event(headers: dict[str, str], *, key: str = "run-1", value: bytes = b"payload", topic: str = RUN_ENDED) -> Event:
    return Event(topic=topic, key=key, value=value, headers={"ce_id": "e-1", **headers}, partition=0, offset=0)


def test_only_the_key_holder_signs_and_every_part_of_the_event_is_covered() -> None:
    good = signature("k", RUN_ENDED, "run-1", "e-1", b"payload")
    assert authentic(event({SIGNATURE_HEADER: good}), "k")
    assert not authentic(event({}), "k")  # unsigned
    assert not authentic(event({SIGNATURE_HEADER: signature("other", RUN_ENDED, "run-1", "e-1", b"payload")}), "k")
    assert not authentic(event({SIGNATURE_HEADER: good}, key="run-2"), "k")  # moved to another run
    assert not authentic(event({SIGNATURE_HEADER: good}, value=b"FAILED"), "k")  # another payload
    assert not authentic(event({SIGNATURE_HEADER: good}, topic=RUN_STARTED), "k")  # another topic
    assert not authentic(event({SIGNATURE_HEADER: good, "ce_id": "e-2"}), "k")  # another event id
    # parts are length-prefixed: moving bytes between them changes the signature
    assert signature("k", RUN_ENDED, "ab", "c", b"") != signature("k", RUN_ENDED, "a", "bc", b"")
    assert authentic(event({}), "")  # no key configured: nothing to check
