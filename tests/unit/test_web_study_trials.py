"""The study page's trials kept between requests (only those not yet ended are read again) and its
best trials computed as Optuna's best_trials."""

from __future__ import annotations

import asyncio
import json

from trackd_api.hpo.v1 import hpo_pb2
from trackd_platform.paging import decode_token
from trackd_services.web.studies import inline_json, trial_json
from trackd_services.web.study_trials import TrialCache, best_numbers


def test_best_numbers_single_objective_and_pareto_front() -> None:
    def t(number: int, values: list[float], state: str = "COMPLETE") -> dict[str, object]:
        return {"number": number, "state": state, "values": values}

    trials = [t(0, [0.5]), t(1, [0.2]), t(2, [0.2]), t(3, [0.1], "PRUNED"), t(4, [float("nan")])]
    assert best_numbers(trials, [False]) == [1]  # the lowest number among equals; pruned and NaN ignored
    assert best_numbers(trials, [True]) == [0]
    assert best_numbers([t(0, [1.0], "FAIL")], [False]) == []
    # minimize both: (1, 3) (2, 2) (2, 2) (3, 1) on the front, (3, 3) dominated, (2, 4) dominated by (2, 2)
    two = [t(0, [1, 3]), t(1, [2, 2]), t(2, [3, 3]), t(3, [3, 1]), t(4, [2, 2]), t(5, [2, 4])]
    assert best_numbers(two, [False, False]) == [0, 1, 3, 4]
    assert best_numbers(two, [True, False]) == [3]  # maximize the first: (3, 1) dominates every other
    assert best_numbers(two, [True, True]) == [2, 5]


def test_trials_read_again_only_from_the_first_one_not_ended() -> None:
    states = {0: hpo_pb2.TRIAL_STATE_COMPLETE, 1: hpo_pb2.TRIAL_STATE_COMPLETE, 2: hpo_pb2.TRIAL_STATE_RUNNING,
              3: hpo_pb2.TRIAL_STATE_WAITING}
    asked: list[int] = []

    async def list_trials(request: hpo_pb2.ListTrialsRequest) -> hpo_pb2.ListTrialsResponse:
        after = (decode_token(request.page_token, arity=1) or [-1])[0]
        asked.append(after)
        numbers = sorted(n for n in states if n > after)[:request.page_size]
        return hpo_pb2.ListTrialsResponse(trials=[
            hpo_pb2.Trial(number=n, state=states[n], params_json=json.dumps({"x": n})) for n in numbers])

    cache = TrialCache(trial_json)
    first = asyncio.run(cache.trials("s", list_trials, 100))
    assert [t["state"] for t in first] == ["COMPLETE", "COMPLETE", "RUNNING", "WAITING"] and asked == [-1]
    states.update({2: hpo_pb2.TRIAL_STATE_PRUNED, 4: hpo_pb2.TRIAL_STATE_RUNNING})
    del states[3]  # a waiting trial dropped
    again = asyncio.run(cache.trials("s", list_trials, 100))
    assert asked == [-1, 1]  # trials 0 and 1 had ended: not read again
    assert [(t["number"], t["state"]) for t in again] == [(0, "COMPLETE"), (1, "COMPLETE"), (2, "PRUNED"),
                                                          (4, "RUNNING")]
    asyncio.run(cache.trials("s", list_trials, 100))
    assert asked == [-1, 1, 2]
    assert len(asyncio.run(cache.trials("other", list_trials, 2))) == 2  # at most `limit` trials


def test_the_study_pages_inline_json_cannot_end_its_script_element() -> None:
    value = {"params": {"name": "</script><script>alert(1)</script><!--"}, "values": [0.5]}
    text = inline_json(value)
    assert "<" not in text
    assert json.loads(text) == value
