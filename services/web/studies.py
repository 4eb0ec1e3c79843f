"""HPO studies: the list of studies, a study's page (state, trials by state, best trials, the trials
table) and the JSON its charts draw from (optimization history, intermediate values per trial,
parallel coordinates, param importance, the Pareto front), polled while the study runs; and
pause, resume and stop for callers who may write.

A study's trials are kept between requests (study_trials.TrialCache: only those not yet ended are
read again) and its best trials computed from them, so a 10,000-trial study's page and its polls
stay quick. Intermediate values are read from each trial's run (`Trial.report` logs them there as
a metric; an ended trial's curve is kept);
param importance is Optuna's fANOVA over the completed trials (trackd_platform.importance, the
same as `trackd hpo show`), computed here because it needs the trials' values, not a run metric."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import grpc
import orjson
from cachetools import LRUCache, TTLCache
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates
from trackd_api.hpo.v1 import hpo_pb2
from trackd_api.query.v1 import query_pb2
from trackd_platform.importance import METHOD, fanova

from . import views
from .backends import Backends, Caller, page_call
from .charts import FastJSON
from .http import require_csrf
from .study_trials import ENDED, Trial, TrialCache, best_numbers

log = logging.getLogger(__name__)
MAX_COUNTED = 200  # the newest studies of the list get their trial counts
MAX_TRIALS = 10_000  # the page shows at most this many trials
SERVER_ROWS = 60  # rows rendered in the page's HTML (about those in view); its script draws the table
MAX_CURVES = 500  # trials whose intermediate values are drawn (the newest)
KEPT_CURVES = 5_000  # ended trials' intermediate values kept (10 studies of MAX_CURVES; up to ~20 KB each)
CURVE_POINTS = 300
BULK_RUNS = 100  # GetMetricHistoryBulk's limit of runs per call
MAX_IMPORTANCE_TRIALS = 2000  # fANOVA over the newest completed trials
ENDED_STUDY = ("STOPPED", "FINISHED")
ACTIONS = {"pause": ("PauseStudy", hpo_pb2.PauseStudyRequest), "resume": ("StartStudy", hpo_pb2.StartStudyRequest),
           "stop": ("StopStudy", hpo_pb2.StopStudyRequest)}


def state_name(state: int) -> str:
    return hpo_pb2.StudyState.Name(state).removeprefix("STUDY_STATE_") if state else "UNKNOWN"


def trial_state(state: int) -> str:
    return hpo_pb2.TrialState.Name(state).removeprefix("TRIAL_STATE_") if state else "UNKNOWN"


def direction_name(direction: int) -> str:
    return "maximize" if direction == hpo_pb2.DIRECTION_MAXIMIZE else "minimize"


def trial_json(t: hpo_pb2.Trial) -> dict[str, Any]:
    try:
        params = json.loads(t.params_json) if t.params_json else {}
    except ValueError:
        params = {}
    # what the page shows of it (start and end times are left out: 10,000 trials' would add ~1 MB)
    return {"number": t.number, "state": trial_state(t.state), "values": list(t.values), "params": params,
            "run_id": t.run_id,
            "duration_ms": _ms(t.end_time) - _ms(t.start_time) if t.end_time.seconds and t.start_time.seconds else None}


def _ms(ts: Any) -> int:
    return int(ts.seconds * 1000 + ts.nanos // 1_000_000)


def study_json(study: hpo_pb2.Study, trials: Sequence[Trial], best: Sequence[int]) -> dict[str, Any]:
    """What the study's page draws: the study, every trial (as `trial_json`, by number) and the
    best trial numbers."""
    waiting = sum(1 for t in trials if t["state"] == "WAITING")
    return {
        "id": study.id, "name": study.name, "state": state_name(study.state),
        "objectives": [{"metric": o.metric or "objective", "direction": direction_name(o.direction)}
                       for o in study.objectives] or [{"metric": "objective", "direction": "minimize"}],
        "counts": {"COMPLETE": study.trials_complete, "PRUNED": study.trials_pruned, "FAIL": study.trials_failed,
                   "RUNNING": study.trials_running, "WAITING": waiting},
        "max_trials": study.max_trials,
        "trials": trials,
        "best": list(best),
        "live": is_live(study, trials),
    }


def is_live(study: hpo_pb2.Study, trials: Sequence[Trial]) -> bool:
    """Whether the page should keep polling: the study may still change on its own."""
    return (state_name(study.state) not in ENDED_STUDY or study.trials_running > 0
            or any(t["state"] == "RUNNING" for t in trials))


def maximized(study: hpo_pb2.Study) -> list[bool]:
    return [o.direction == hpo_pb2.DIRECTION_MAXIMIZE for o in study.objectives] or [False]


def importance_points(trials: Sequence[Mapping[str, Any]]
                      ) -> tuple[list[str], dict[str, list[str]], list[tuple[Mapping[str, float | str], float]]]:
    """fANOVA's input from completed trials (as `trial_json` gives them): the params every one has
    (conditional ones left out), numbers as numbers, anything else as a category (its JSON)."""
    done = [t for t in trials if t["state"] == "COMPLETE" and t["values"]]
    if len(done) < 2:
        return [], {}, []
    shared = sorted(set.intersection(*(set(t["params"]) for t in done)))
    numeric = {n for n in shared if all(isinstance(t["params"][n], int | float) and not isinstance(t["params"][n], bool)
                                        for t in done)}
    categories = {n: sorted({json.dumps(t["params"][n]) for t in done}) for n in shared if n not in numeric}
    points: list[tuple[Mapping[str, float | str], float]] = [
        ({k: float(t["params"][k]) if k in numeric else json.dumps(t["params"][k]) for k in shared}, t["values"][0])
        for t in done]
    return shared, categories, points


class Studies:
    def __init__(self, backends: Backends, templates: Jinja2Templates) -> None:
        self._b = backends
        self._t = templates
        self._importance: TTLCache[tuple[str, int], dict[str, Any]] = TTLCache(maxsize=256, ttl=600)
        self._computing: dict[tuple[str, int], asyncio.Future[dict[str, Any]]] = {}
        self._trial_cache = TrialCache(trial_json)
        # intermediate values of ended trials, (run id, key) → the curve; they no longer change
        self._curves: LRUCache[tuple[str, str], dict[str, Any]] = LRUCache(maxsize=KEPT_CURVES)

    def routes(self) -> list[Route]:
        return [
            Route("/studies", self.index),
            Route("/studies/{study}", self.page),
            Route("/studies/{study}/{action}", self.act, methods=["POST"]),
            Route("/api/studies/{study}", self.data),
            Route("/api/studies/{study}/intermediate", self.intermediate),
            Route("/api/studies/{study}/importance", self.importance),
        ]

    _call = staticmethod(page_call)  # one RPC for a page (backends.page_call)

    async def _study(self, request: Request, caller: Caller) -> hpo_pb2.Study:
        ref = request.path_params["study"]
        by = hpo_pb2.GetStudyRequest(study_id=ref) if _is_id(ref) else hpo_pb2.GetStudyRequest(name=ref)
        return (await self._call(self._b.hpo.GetStudy, by, caller, not_found=f"No study {ref!r}.")).study

    async def _trials(self, study: hpo_pb2.Study, caller: Caller) -> list[Trial]:
        """The study's trials (the first MAX_TRIALS), those that ended kept from earlier requests
        (study_trials.TrialCache); `study` was read with the caller's credentials."""
        async def list_trials(request: hpo_pb2.ListTrialsRequest) -> hpo_pb2.ListTrialsResponse:
            return await self._call(self._b.hpo.ListTrials, request, caller)

        return await self._trial_cache.trials(study.id, list_trials, MAX_TRIALS)

    async def _everything(self, request: Request) -> tuple[hpo_pb2.Study, list[Trial], list[int]]:
        caller = self._b.caller(request)
        study = await self._study(request, caller)
        trials = await self._trials(study, caller)
        return study, trials, best_numbers(trials, maximized(study))

    # -- pages ------------------------------------------------------------------------------------

    async def index(self, request: Request) -> Response:
        caller = self._b.caller(request)
        found = await self._call(self._b.hpo.ListStudies, hpo_pb2.ListStudiesRequest(page_size=1000), caller)
        listed = sorted(found.studies, key=lambda s: (s.create_time.seconds, s.create_time.nanos), reverse=True)
        limit = asyncio.Semaphore(8)

        async def counted(s: hpo_pb2.Study) -> hpo_pb2.Study:
            """GetStudy fills the trial counts (ListStudies does not)."""
            async with limit:
                try:
                    return (await self._call(self._b.hpo.GetStudy, hpo_pb2.GetStudyRequest(study_id=s.id),
                                             caller)).study
                except grpc.aio.AioRpcError:
                    return s

        studies = [*await asyncio.gather(*(counted(s) for s in listed[:MAX_COUNTED])), *listed[MAX_COUNTED:]]
        rows = [{"id": s.id, "name": s.name, "state": state_name(s.state), "complete": s.trials_complete,
                 "pruned": s.trials_pruned, "failed": s.trials_failed, "running": s.trials_running,
                 "max_trials": s.max_trials, "objectives": ", ".join(
                     f"{o.metric or 'objective'} ({direction_name(o.direction)})" for o in s.objectives),
                 "created": views.format_time(s.create_time), "created_iso": views.iso_time(s.create_time)}
                for s in studies]
        return self._t.TemplateResponse(request, "studies.html", {"studies": rows})

    async def page(self, request: Request) -> Response:
        """The study with its first SERVER_ROWS trials as HTML, and all of them as JSON for the page's
        script (what /api/studies/<id> answers: read here already, they were read again a round
        trip later)."""
        study, trials, best = await self._everything(request)
        data = study_json(study, trials[:SERVER_ROWS], best)
        by_number = {t["number"]: t for t in trials}
        space = _space(study.search_space_json)
        return self._t.TemplateResponse(request, "study.html", {
            "study": study, "data": data, "all_data": inline_json(study_json(study, trials, best)),
            "best": [by_number[n] for n in best], "state": data["state"],
            "highlight": request.query_params.get("trial", ""), "space": space, "total": len(trials),
            "param_names": sorted({name for name, _ in space} | {k for t in trials for k in t["params"]}),
            "rows": data["trials"], "more_rows": len(trials) - len(data["trials"]),
            "created": views.format_time(study.create_time)})

    async def act(self, request: Request) -> Response:
        """Pause, resume or stop the study; back to its page."""
        await require_csrf(request)
        action = request.path_params["action"]
        if action not in ACTIONS:
            raise HTTPException(404, f"Unknown study action {action!r}: pause, resume or stop.")
        caller = self._b.caller(request)
        study = await self._study(request, caller)
        method, message = ACTIONS[action]
        await self._call(getattr(self._b.hpo, method), message(study_id=study.id), caller)
        return RedirectResponse(f"/studies/{study.id}", 303)

    # -- chart data -------------------------------------------------------------------------------

    async def data(self, request: Request) -> Response:
        study, trials, best = await self._everything(request)
        return FastJSON(study_json(study, trials, best))

    async def intermediate(self, request: Request) -> Response:
        """Each trial's intermediate values (the newest MAX_CURVES trials), from its run's metric
        `key` (the objective's metric, else `objective`, the name `Trial.report` logs by default)."""
        caller = self._b.caller(request)
        study = await self._study(request, caller)
        trials = [t for t in await self._trials(study, caller) if t["run_id"]][-MAX_CURVES:]
        keys = list(dict.fromkeys([*(o.metric for o in study.objectives[:1] if o.metric), "objective"]))
        curves: dict[str, dict[str, Any]] = {}
        wanted: dict[str, Trial] = {}
        for t in trials:  # an ended trial's curve read before is not read again
            if t["state"] in ENDED and (kept := self._curves.get((t["run_id"], keys[0]))) is not None:
                curves[t["run_id"]] = kept
            else:
                wanted[t["run_id"]] = t
        limit = asyncio.Semaphore(4)

        async def fetch(run_ids: list[str]) -> list[query_pb2.RunSeries]:
            async with limit:
                found = await self._call(self._b.query.GetMetricHistoryBulk, query_pb2.GetMetricHistoryBulkRequest(
                    run_ids=run_ids, keys=keys, max_points=CURVE_POINTS), caller)
            return list(found.series)

        run_ids = list(wanted)
        parts = await asyncio.gather(*(fetch(run_ids[i:i + BULK_RUNS]) for i in range(0, len(run_ids), BULK_RUNS)))
        read: dict[str, dict[str, Any]] = {}
        for part in parts:
            for s in part:
                trial = wanted[s.run_id]
                if s.series.key == keys[0] or s.run_id not in read:
                    read[s.run_id] = {"number": trial["number"], "state": trial["state"], "key": s.series.key,
                                      "steps": list(s.series.steps), "values": list(s.series.values)}
        for run_id, trial in wanted.items():
            if trial["state"] in ENDED:  # kept, also when it has none (an empty curve)
                self._curves[(run_id, keys[0])] = read.get(run_id) or {
                    "number": trial["number"], "state": trial["state"], "key": keys[0], "steps": [], "values": []}
        curves.update(read)
        return FastJSON({"curves": sorted(curves.values(), key=lambda c: c["number"])})

    async def importance(self, request: Request) -> Response:
        """fANOVA importance of the params for the first objective. Kept per study and count of
        completed trials (a new one computes it again), for every caller who may read the study
        (each reads its trials first); viewers asking at once share one computation."""
        caller = self._b.caller(request)
        study = await self._study(request, caller)
        trials = await self._trials(study, caller)
        done = [t for t in trials if t["state"] == "COMPLETE"][-MAX_IMPORTANCE_TRIALS:]
        key = (study.id, len(done))
        if (found := self._importance.get(key)) is None:
            pending = self._computing.get(key)
            if pending is None:
                pending = self._computing[key] = asyncio.ensure_future(self._fanova(study, done))
                pending.add_done_callback(lambda _: self._computing.pop(key, None))
            found = await asyncio.shield(pending)
            self._importance[key] = found
        return FastJSON(found)

    async def _fanova(self, study: hpo_pb2.Study, done: list[dict[str, Any]]) -> dict[str, Any]:
        names, categories, points = importance_points(done)
        note = "" if names else "Param importance needs two or more completed trials with params in common."
        try:
            values = await asyncio.to_thread(fanova, names, categories, points) if names else {}
        except ImportError as exc:
            values, note = {}, str(exc)
        except Exception as exc:  # noqa: BLE001 — e.g. every trial has the same params: a note, not a 500
            log.info("fANOVA of study %s failed: %s", study.id, exc)
            values, note = {}, f"Param importance could not be computed: {exc}"
        metric = study.objectives[0].metric if study.objectives else "objective"
        return {"importances": [{"param": k, "importance": v} for k, v in values.items()], "metric": metric,
                "method": METHOD, "trials": len(points), "note": note}


def inline_json(value: Any) -> str:
    """JSON for a <script type="application/json"> element: no "<" in it, so neither "</script>"
    nor "<!--" in a value (a param's string) can end or change the element."""
    return orjson.dumps(value).decode().replace("<", "\\u003c")


def _space(text: str) -> list[tuple[str, str]]:
    """The search space as (param, a short description) rows."""
    try:
        space = json.loads(text) if text else {}
    except ValueError:
        return []
    rows = []
    for name, spec in space.items():
        if not isinstance(spec, dict):
            continue
        kind = spec.get("type", "")
        if "choices" in spec:
            text = "{" + ", ".join(json.dumps(c) for c in spec["choices"]) + "}"
        else:
            text = f"[{spec.get('low')}, {spec.get('high')}]" + (" log" if spec.get("log") else "") + \
                   (f" step {spec['step']}" if spec.get("step") else "")
        if spec.get("when"):
            text += f" when {json.dumps(spec['when'])}"
        rows.append((name, f"{kind} {text}".strip()))
    return rows


def _is_id(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True
