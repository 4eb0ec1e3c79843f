"""Run lifecycle rules and limits (pure logic)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from trackd_platform.errors import FailedPrecondition, InvalidArgument
from trackd_services.run import domain
from trackd_services.run.domain import RunStatus


def make_run(status: RunStatus = RunStatus.RUNNING, **changes: object) -> domain.Run:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    fields: dict[str, object] = dict(
        id=uuid.uuid4(), experiment_id=uuid.uuid4(), project_id=uuid.uuid4(), name="r", status=status,
        start_time=start, end_time=None, last_heartbeat=start, parent_run_id=None, user="", notes="",
        source={}, environment={}, deleted=False,
    )
    fields.update(changes)
    return domain.Run(**fields)  # type: ignore[arg-type]


def test_params_are_immutable_but_repeats_are_no_ops() -> None:
    assert domain.new_params({"lr": "0.1"}, {"lr": "0.1", "wd": "0"}) == {"wd": "0"}
    with pytest.raises(InvalidArgument, match="'lr' is already '0.1'"):
        domain.new_params({"lr": "0.1"}, {"lr": "0.2"})


def test_only_a_running_run_ends_and_only_with_a_client_status() -> None:
    domain.check_end(make_run(), RunStatus.FINISHED)
    with pytest.raises(FailedPrecondition, match="is FINISHED, not RUNNING"):
        domain.check_end(make_run(RunStatus.FINISHED), RunStatus.FAILED)
    with pytest.raises(InvalidArgument):
        domain.check_end(make_run(), RunStatus.CRASHED)
    with pytest.raises(InvalidArgument):
        domain.check_end(make_run(), RunStatus.RUNNING)
    with pytest.raises(InvalidArgument, match="status is required"):
        domain.parse_status(0)
    domain.check_end(make_run(RunStatus.CRASHED), RunStatus.FINISHED)  # the client comes back


@pytest.mark.parametrize(
    ("items", "message"),
    [
        ({"": "v"}, "must not be empty"),
        ({"k" * 251: "v"}, "the limit is 250"),
        ({"k": "v" * 6001}, "the limit is 6000"),
        ({f"k{i}": "v" for i in range(1001)}, "the limit is 1000"),
    ],
)
def test_param_limits(items: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        domain.validate_params(items)


def test_limits_accept_the_boundary() -> None:
    assert domain.validate_params({"k" * 250: "v" * 6000})
    assert domain.validate_tags({"k": "v" * 5000})
    with pytest.raises(InvalidArgument):
        domain.validate_tags({"k": "v" * 5001})
    assert domain.validate_name("run name", "n" * 250)
    with pytest.raises(InvalidArgument):
        domain.validate_name("run name", "   ")


def test_ids_and_views() -> None:
    value = uuid.uuid4()
    assert domain.parse_id("run_id", value.hex) == value
    assert domain.parse_id("run_id", str(value)) == value
    with pytest.raises(InvalidArgument, match="not a valid id"):
        domain.parse_id("run_id", "xyz")
    assert domain.optional_id("parent_run_id", "") is None
    assert domain.parse_view(0) is domain.View.ACTIVE_ONLY
    with pytest.raises(InvalidArgument):
        domain.parse_view(9)


def test_duration_runs_to_now_while_running() -> None:
    run = make_run()
    assert run.duration_ms(run.start_time + timedelta(seconds=2)) == 2000
    ended = make_run(RunStatus.FINISHED, end_time=run.start_time + timedelta(milliseconds=1500))
    assert ended.duration_ms(run.start_time + timedelta(days=1)) == 1500


def test_crash_grace_waits_a_whole_timeout_of_writable_database_after_an_outage() -> None:
    from trackd_services.run.domain import CrashGrace

    grace = CrashGrace(timeout_s=120)
    assert not grace.may_judge(1000.0), "at start: heartbeats may have failed while the service was down"
    assert not grace.may_judge(1119.0)
    assert grace.may_judge(1120.0)
    grace.failed()  # PostgreSQL could not be written
    assert not grace.may_judge(2000.0) and not grace.may_judge(2100.0)
    assert grace.may_judge(2120.0)


def test_a_running_or_crashed_run_resumes_an_ended_or_deleted_one_does_not() -> None:
    domain.check_resume(make_run())  # its process replaced (preemption) before it was judged CRASHED
    domain.check_resume(make_run(RunStatus.CRASHED))
    for ended in (RunStatus.FINISHED, RunStatus.FAILED, RunStatus.KILLED):
        with pytest.raises(FailedPrecondition, match=f"ended {ended.name}; only a RUNNING or CRASHED"):
            domain.check_resume(make_run(ended))
    with pytest.raises(FailedPrecondition, match="deleted"):
        domain.check_resume(make_run(deleted=True))
    assert domain.validate_resume_key("") == "" and domain.validate_resume_key("job-1234") == "job-1234"
    for bad in (" ", "k" * 251):
        with pytest.raises(InvalidArgument, match="resume_key"):
            domain.validate_resume_key(bad)
