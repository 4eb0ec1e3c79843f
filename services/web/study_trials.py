"""A study's trials as its page draws them, kept between requests, and its best trials.

A trial that has ended (COMPLETE, PRUNED, FAIL) never changes again and trial numbers only grow,
so `TrialCache` keeps each study's trials and asks the hpo service (ListTrials, with the caller's
credentials, after GetStudy has checked them) only for those from the first trial still open
onwards: the page of a 10,000-trial study, and every poll of it while it runs, reads the few
trials that may have changed rather than all 10,000 (ListTrials of 10,000 trials takes seconds).

`best_numbers` is Optuna's `best_trials` over those trials (the study's engine answers
GetBestTrials the same way): the completed trial with the best first value (the lowest number
among equals), or with several objectives every completed trial no other dominates (equal ones
all stay on the front)."""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from trackd_api.hpo.v1 import hpo_pb2
from trackd_platform.paging import encode_token

ENDED = frozenset({"COMPLETE", "PRUNED", "FAIL"})
PAGE = 1000  # ListTrials' page size
KEPT_STUDIES = 8  # studies whose trials are kept (the least recently shown is dropped; ~10 MB each at 10,000)

Trial = dict[str, Any]  # as studies.trial_json gives it
ListTrials = Callable[[hpo_pb2.ListTrialsRequest], Awaitable[hpo_pb2.ListTrialsResponse]]


class TrialCache:
    """Per study: the trials read so far and `settled`, the number up to which every trial has ended."""

    def __init__(self, to_json: Callable[[hpo_pb2.Trial], Trial], studies: int = KEPT_STUDIES) -> None:
        self._to_json = to_json
        self._kept: OrderedDict[str, tuple[int, dict[int, Trial]]] = OrderedDict()
        self._size = studies

    async def trials(self, study_id: str, list_trials: ListTrials, limit: int) -> list[Trial]:
        """The study's first `limit` trials by number, read through `list_trials` from the first
        one not known to have ended."""
        settled, kept = self._kept.get(study_id, (-1, {}))
        found = {n: t for n, t in kept.items() if n <= settled}
        token = encode_token([settled]) if settled >= 0 else ""
        while len(found) < limit:
            page = await list_trials(hpo_pb2.ListTrialsRequest(study_id=study_id, page_size=PAGE, page_token=token))
            for listed in page.trials:
                found[listed.number] = self._to_json(listed)
            token = page.next_page_token
            if not token:
                break
        trials = [found[n] for n in sorted(found)][:limit]
        settled = -1
        for t in trials:
            if t["state"] not in ENDED:
                break
            settled = t["number"]
        self._kept[study_id] = (settled, {t["number"]: t for t in trials})
        self._kept.move_to_end(study_id)
        while len(self._kept) > self._size:
            self._kept.popitem(last=False)
        return trials


def best_numbers(trials: Sequence[Trial], maximize: Sequence[bool]) -> list[int]:
    """Numbers of the best trial, or of the Pareto front with several objectives (see above)."""
    signs = [-1.0 if m else 1.0 for m in maximize]
    if len(signs) == 1:
        return _best_single(trials, signs[0])
    done = [(tuple(s * v for s, v in zip(signs, t["values"], strict=True)), t["number"]) for t in trials
            if t["state"] == "COMPLETE" and len(t["values"]) == len(signs)
            and all(isinstance(v, int | float) and math.isfinite(v) for v in t["values"])]
    if not done:
        return []
    # lexicographic order: a dominating point always comes before the points it dominates, so
    # comparing each point with the front found so far is enough
    front: list[tuple[tuple[float, ...], int]] = []
    for loss, number in sorted(done):
        if not any(all(a <= b for a, b in zip(f, loss, strict=True)) and f != loss for f, _ in front):
            front.append((loss, number))
    return sorted(n for _, n in front)


def _best_single(trials: Sequence[Trial], sign: float) -> list[int]:
    """The completed trial with the lowest `sign` × value (the lowest number among equals): a plain
    loop, as the page's every request asks it of up to 10,000 trials."""
    best: tuple[float, int] | None = None
    for t in trials:
        values = t["values"]
        if t["state"] != "COMPLETE" or len(values) != 1:
            continue
        v = values[0]
        if not isinstance(v, int | float) or not math.isfinite(v):
            continue
        key = (sign * v, t["number"])
        if best is None or key < best:
            best = key
    return [] if best is None else [best[1]]
