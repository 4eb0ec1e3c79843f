"""PostgreSQL access for Optuna's storage protocol (optuna_storage.py): an Optuna study is a row
of `studies` plus one of `optuna_studies` (its integer id, directions, attributes), a trial a row
of `trials` plus one of `optuna_trials` (its integer id, params as Optuna's internal floats,
distributions, attributes); intermediate values are `trial_intermediates`. Attribute values and
distributions are kept as the JSON text Optuna sends (NaN and Infinity included) and given back
unchanged.

Atomicity, which Optuna relies on: trial numbers are dense and unique per study (created under
the `optuna_studies` row lock); a state change is one conditional UPDATE (WAITING → RUNNING
succeeds for exactly one caller); a write to an ended trial is FailedPrecondition."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from trackd_platform.errors import AlreadyExists, FailedPrecondition, NotFound

from .domain import ENDED, OPTUNA_CLIENT, StudyState, TrialState

_ENDED = [int(s) for s in ENDED]
SAMPLER = OPTUNA_CLIENT  # `studies.sampler` of a study Optuna's clients sample for themselves


def stopped(name: str) -> str:
    return (f"study {name!r} was stopped in trackd (trackd hpo stop): it starts no more trials; its running "
            "trials may still report and end. Create a new study to search again")


def _json(value: Any) -> dict[str, Any]:
    return dict(value or {})  # the pool decodes jsonb (trackd_platform.db)


@dataclass(frozen=True)
class OptunaStudy:
    id: int
    study_id: uuid.UUID
    name: str
    directions: list[int]
    user_attrs: dict[str, str]  # key → JSON text
    system_attrs: dict[str, str]
    project_id: uuid.UUID
    run_id: uuid.UUID | None
    experiment_id: uuid.UUID


@dataclass(frozen=True)
class OptunaTrial:
    id: int
    trial_id: uuid.UUID
    study_id: int
    number: int
    state: TrialState
    values: list[float] | None
    started_at: datetime | None
    ended_at: datetime | None
    params: dict[str, float]  # internal representations
    distributions: dict[str, str]  # JSON text
    user_attrs: dict[str, str]
    system_attrs: dict[str, str]
    intermediates: dict[int, float]
    run_id: uuid.UUID | None
    external_params: dict[str, Any]


@dataclass(frozen=True)
class NewTrial:
    """What a trial is created with (Optuna's template trial, or a RUNNING trial with nothing)."""

    state: TrialState = TrialState.RUNNING
    values: Sequence[float] | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    params: Mapping[str, float] = ()  # type: ignore[assignment]
    external_params: Mapping[str, Any] = ()  # type: ignore[assignment]
    distributions: Mapping[str, str] = ()  # type: ignore[assignment]
    user_attrs: Mapping[str, str] = ()  # type: ignore[assignment]
    system_attrs: Mapping[str, str] = ()  # type: ignore[assignment]
    intermediates: Mapping[int, float] = ()  # type: ignore[assignment]


_STUDY_SELECT = """
    SELECT o.id, o.study_id, s.name, o.directions, o.user_attrs, o.system_attrs, e.project_id, s.run_id,
           s.experiment_id
    FROM optuna_studies o JOIN studies s ON s.id = o.study_id JOIN experiments e ON e.id = s.experiment_id"""

_TRIAL_SELECT = """
    SELECT o.id, o.trial_id, o.optuna_study_id, o.params AS internal, o.distributions, o.user_attrs,
           o.system_attrs, t.number, t.state, t.objective_values, t.started_at, t.ended_at, t.run_id, t.params,
           ARRAY(SELECT step FROM trial_intermediates i WHERE i.trial_id = t.id ORDER BY step) AS steps,
           ARRAY(SELECT value FROM trial_intermediates i WHERE i.trial_id = t.id ORDER BY step) AS step_values
    FROM optuna_trials o JOIN trials t ON t.id = o.trial_id"""


def _study(row: asyncpg.Record) -> OptunaStudy:
    return OptunaStudy(row["id"], row["study_id"], row["name"], list(row["directions"]), _json(row["user_attrs"]),
                       _json(row["system_attrs"]), row["project_id"], row["run_id"], row["experiment_id"])


def _trial(row: asyncpg.Record) -> OptunaTrial:
    return OptunaTrial(
        id=row["id"], trial_id=row["trial_id"], study_id=row["optuna_study_id"], number=row["number"],
        state=TrialState(row["state"]),
        values=list(row["objective_values"]) if row["objective_values"] is not None else None,
        started_at=row["started_at"], ended_at=row["ended_at"], params=_json(row["internal"]),
        distributions=_json(row["distributions"]), user_attrs=_json(row["user_attrs"]),
        system_attrs=_json(row["system_attrs"]), intermediates=dict(zip(row["steps"], row["step_values"], strict=True)),
        run_id=row["run_id"], external_params=_json(row["params"]))


class OptunaStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    # -- studies --------------------------------------------------------------------------------

    async def name_taken(self, name: str) -> bool:
        return bool(await self._pool.fetchval("SELECT EXISTS (SELECT 1 FROM studies WHERE name = $1)", name))

    async def create_study(self, *, name: str, directions: Sequence[int], objectives: list[dict[str, Any]],
                           experiment_id: uuid.UUID, run_id: uuid.UUID) -> int:
        """A RUNNING trackd study that no trackd sampler serves (parallelism 0: Optuna's clients
        ask and tell); AlreadyExists when a study (trackd's or Optuna's) has this name."""
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                study_id = uuid.uuid4()
                await conn.execute(
                    """INSERT INTO studies (id, name, experiment_id, run_id, objectives, search_space, sampler,
                                            pruner, parallelism, state, started_at)
                       VALUES ($1, $2, $3, $4, $5, '{}', $6, 'none', 0, $7, now())""",
                    study_id, name, experiment_id, run_id, objectives, SAMPLER, StudyState.RUNNING)
                return int(await conn.fetchval(
                    "INSERT INTO optuna_studies (study_id, directions) VALUES ($1, $2) RETURNING id",
                    study_id, list(directions)))
        except asyncpg.UniqueViolationError:
            raise AlreadyExists(f"a study named {name!r} exists already") from None

    async def study(self, study_id: int) -> OptunaStudy:
        row = await self._pool.fetchrow(_STUDY_SELECT + " WHERE o.id = $1", study_id)
        if row is None:
            raise NotFound(f"Optuna study {study_id} does not exist")
        return _study(row)

    async def study_of(self, study_id: uuid.UUID) -> OptunaStudy:
        """The Optuna study of the trackd study `study_id`."""
        row = await self._pool.fetchrow(_STUDY_SELECT + " WHERE o.study_id = $1", study_id)
        if row is None:
            raise NotFound(f"study {study_id.hex} is not an Optuna study")
        return _study(row)

    async def study_by_name(self, name: str) -> OptunaStudy:
        row = await self._pool.fetchrow(_STUDY_SELECT + " WHERE s.name = $1", name)
        if row is None:
            raise NotFound(f"no Optuna study is named {name!r}")
        return _study(row)

    async def studies(self, project_id: uuid.UUID | None) -> list[OptunaStudy]:
        """Every Optuna study (of `project_id` unless None), oldest first."""
        rows = await self._pool.fetch(_STUDY_SELECT + " WHERE $1::uuid IS NULL OR e.project_id = $1 ORDER BY o.id",
                                      project_id)
        return [_study(r) for r in rows]

    async def project_name(self, project_id: uuid.UUID) -> str:
        name = await self._pool.fetchval("SELECT name FROM projects WHERE id = $1", project_id)
        if name is None:
            raise NotFound(f"project {project_id.hex} does not exist")
        return str(name)

    async def delete_study(self, study_id: int) -> list[uuid.UUID]:
        """The study, its trials and everything Optuna kept of them; returns the runs of its
        trials still open (their runs stay in trackd, as runs do)."""
        async with self._pool.acquire() as conn, conn.transaction():
            trackd_id = await conn.fetchval("SELECT study_id FROM optuna_studies WHERE id = $1 FOR UPDATE", study_id)
            if trackd_id is None:
                raise NotFound(f"Optuna study {study_id} does not exist")
            open_runs = await conn.fetch(
                """SELECT run_id FROM trials
                   WHERE study_id = $1 AND run_id IS NOT NULL AND NOT (state = ANY($2::smallint[]))""",
                trackd_id, _ENDED)
            await conn.execute("DELETE FROM optuna_trials WHERE optuna_study_id = $1", study_id)
            await conn.execute("DELETE FROM optuna_study_params WHERE optuna_study_id = $1", study_id)
            await conn.execute("DELETE FROM trial_intermediates WHERE trial_id IN "
                               "(SELECT id FROM trials WHERE study_id = $1)", trackd_id)
            await conn.execute("DELETE FROM trials WHERE study_id = $1", trackd_id)
            await conn.execute("DELETE FROM optuna_studies WHERE id = $1", study_id)
            await conn.execute("DELETE FROM studies WHERE id = $1", trackd_id)
        return [r["run_id"] for r in open_runs]

    async def set_study_attr(self, study_id: int, *, system: bool, key: str, value: str) -> None:
        column = "system_attrs" if system else "user_attrs"
        status = await self._pool.execute(
            f"UPDATE optuna_studies SET {column} = {column} || jsonb_build_object($2::text, $3::text) WHERE id = $1",
            study_id, key, value)
        if status.endswith(" 0"):
            raise NotFound(f"Optuna study {study_id} does not exist")

    async def stop_study(self, study_id: int) -> bool:
        """Mark the study STOPPED (under its row lock, which creating a trial takes too: no trial
        is created after this returns); False when it had ended already."""
        async with self._pool.acquire() as conn, conn.transaction():
            trackd_id = await conn.fetchval("SELECT study_id FROM optuna_studies WHERE id = $1 FOR UPDATE", study_id)
            if trackd_id is None:
                raise NotFound(f"Optuna study {study_id} does not exist")
            status = await conn.execute(
                "UPDATE studies SET state = $2 WHERE id = $1 AND NOT (state = ANY($3::smallint[]))",
                trackd_id, StudyState.STOPPED, [StudyState.STOPPED, StudyState.FINISHED])
            return not status.endswith(" 0")

    async def completed(self, study_id: uuid.UUID) -> list[tuple[int, list[float]]]:
        """(number, values) of each COMPLETE trial of the trackd study `study_id`, by number."""
        rows = await self._pool.fetch(
            """SELECT number, objective_values FROM trials WHERE study_id = $1 AND state = $2
                 AND objective_values IS NOT NULL ORDER BY number""", study_id, TrialState.COMPLETE)
        return [(r["number"], list(r["objective_values"])) for r in rows]

    async def distributions(self, study_id: int) -> dict[str, str]:
        """The distribution (JSON text) the study first saw for each param name."""
        rows = await self._pool.fetch("SELECT name, distribution FROM optuna_study_params WHERE optuna_study_id = $1",
                                      study_id)
        return {r["name"]: r["distribution"] for r in rows}

    async def first_distribution(self, study_id: int, name: str, distribution: str) -> str:
        """The distribution the study first saw for param `name` (this one, if it is the first)."""
        first = await self._pool.fetchval(
            """WITH added AS (INSERT INTO optuna_study_params (optuna_study_id, name, distribution)
                              VALUES ($1, $2, $3) ON CONFLICT DO NOTHING RETURNING distribution)
               SELECT distribution FROM added UNION ALL
               SELECT distribution FROM optuna_study_params WHERE optuna_study_id = $1 AND name = $2 LIMIT 1""",
            study_id, name, distribution)
        if first is None:  # a concurrent call added it after this statement's snapshot: read it now
            first = await self._pool.fetchval(
                "SELECT distribution FROM optuna_study_params WHERE optuna_study_id = $1 AND name = $2",
                study_id, name)
        if first is None:
            raise NotFound(f"Optuna study {study_id} does not exist")
        return str(first)

    # -- trials ---------------------------------------------------------------------------------

    async def create_trial(self, study: OptunaStudy, new: NewTrial) -> OptunaTrial:
        """A trial numbered next in its study (numbers are dense: taken under the study's lock).
        FailedPrecondition when the study was stopped (`stop_study`)."""
        async with self._pool.acquire() as conn, conn.transaction():
            state = await conn.fetchval(
                """SELECT s.state FROM optuna_studies o JOIN studies s ON s.id = o.study_id WHERE o.id = $1
                   FOR UPDATE OF o""", study.id)
            if state is None:
                raise NotFound(f"Optuna study {study.id} does not exist")
            if StudyState(state).ended:
                raise FailedPrecondition(stopped(study.name))
            number = await conn.fetchval("SELECT coalesce(max(number) + 1, 0) FROM trials WHERE study_id = $1",
                                         study.study_id)
            trial_id = uuid.uuid4()
            await conn.execute(
                """INSERT INTO trials (id, study_id, number, state, params, objective_values, started_at, ended_at)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8)""",
                trial_id, study.study_id, number, new.state, dict(new.external_params),
                list(new.values) if new.values is not None else None, new.started_at, new.ended_at)
            optuna_id = await conn.fetchval(
                """INSERT INTO optuna_trials (trial_id, optuna_study_id, params, distributions, user_attrs,
                                              system_attrs) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id""",
                trial_id, study.id, dict(new.params), dict(new.distributions), dict(new.user_attrs),
                dict(new.system_attrs))
            if new.intermediates:
                await conn.executemany("INSERT INTO trial_intermediates (trial_id, step, value) VALUES ($1, $2, $3)",
                                       [(trial_id, s, v) for s, v in new.intermediates.items()])
            return _trial(await conn.fetchrow(_TRIAL_SELECT + " WHERE o.id = $1", optuna_id))

    async def trial(self, trial_id: int) -> OptunaTrial:
        row = await self._pool.fetchrow(_TRIAL_SELECT + " WHERE o.id = $1", trial_id)
        if row is None:
            raise NotFound(f"Optuna trial {trial_id} does not exist")
        return _trial(row)

    async def trials(self, study_id: int, *, after: int, including: Sequence[int]) -> list[OptunaTrial]:
        """The study's trials whose id is above `after` or in `including`, by id."""
        rows = await self._pool.fetch(
            _TRIAL_SELECT + " WHERE o.optuna_study_id = $1 AND (o.id > $2 OR o.id = ANY($3::bigint[])) ORDER BY o.id",
            study_id, after, list(including))
        return [_trial(r) for r in rows]

    async def trial_id(self, study_id: int, number: int) -> int:
        found = await self._pool.fetchval(
            """SELECT o.id FROM optuna_trials o JOIN optuna_studies s ON s.id = o.optuna_study_id
               JOIN trials t ON t.id = o.trial_id WHERE s.id = $1 AND t.number = $2""", study_id, number)
        if found is None:
            raise NotFound(f"Optuna study {study_id} has no trial number {number}")
        return int(found)

    async def trial_head(self, trial_id: int) -> tuple[int, TrialState, int, uuid.UUID]:
        """(study id, state, number, project id) of a trial: NotFound if there is none."""
        row = await self._pool.fetchrow(
            """SELECT o.optuna_study_id, t.state, t.number, e.project_id FROM optuna_trials o
               JOIN trials t ON t.id = o.trial_id JOIN studies s ON s.id = t.study_id
               JOIN experiments e ON e.id = s.experiment_id WHERE o.id = $1""", trial_id)
        if row is None:
            raise NotFound(f"Optuna trial {trial_id} does not exist")
        return row["optuna_study_id"], TrialState(row["state"]), row["number"], row["project_id"]

    async def set_run(self, trial: OptunaTrial, run_id: uuid.UUID) -> None:
        await self._pool.execute("UPDATE trials SET run_id = $2 WHERE id = $1", trial.trial_id, run_id)

    async def _refuse(self, trial_id: int) -> None:
        """After a guarded write changed nothing: NotFound, or FailedPrecondition (ended)."""
        trial = await self.trial(trial_id)
        raise FailedPrecondition(f"trial {trial.number} has ended ({trial.state.name}): it cannot change")

    async def set_param(self, trial_id: int, name: str, internal: float, distribution: str, external: Any) -> None:
        status = await self._pool.execute(
            """WITH o AS (
                   UPDATE optuna_trials o SET params = o.params || jsonb_build_object($2::text, $3::float8),
                                              distributions = o.distributions || jsonb_build_object($2::text, $4::text)
                   FROM trials t WHERE o.id = $1 AND t.id = o.trial_id AND NOT (t.state = ANY($6::smallint[]))
                   RETURNING o.trial_id)
               UPDATE trials t SET params = t.params || jsonb_build_object($2::text, $5::jsonb)
               FROM o WHERE t.id = o.trial_id""",
            trial_id, name, internal, distribution, external, _ENDED)
        if status.endswith(" 0"):
            await self._refuse(trial_id)

    async def set_state(self, trial_id: int, state: TrialState, values: Sequence[float] | None,
                        ) -> OptunaTrial | None:
        """Move the trial to `state` (RUNNING only from WAITING, and not in a stopped study); the
        trial as moved, or None when it was not WAITING (for RUNNING). FailedPrecondition when it
        has ended, or would start in a stopped study."""
        row = await self._pool.fetchrow(
            """UPDATE trials t SET state = $2::smallint, objective_values = $3::float8[],
                      started_at = CASE WHEN $2::smallint = $5::smallint THEN now() ELSE t.started_at END,
                      ended_at = CASE WHEN $2::smallint = ANY($4::smallint[]) THEN now() ELSE t.ended_at END
               FROM optuna_trials o
               WHERE o.id = $1 AND t.id = o.trial_id AND NOT (t.state = ANY($4::smallint[]))
                 AND ($2::smallint <> $5::smallint OR (t.state = $6::smallint AND NOT EXISTS (
                      SELECT 1 FROM studies s WHERE s.id = t.study_id AND s.state = $7::smallint)))
               RETURNING o.id""",
            trial_id, state, list(values) if values is not None else None, _ENDED, TrialState.RUNNING,
            TrialState.WAITING, StudyState.STOPPED)
        if row is not None:
            return await self.trial(trial_id)
        trial = await self.trial(trial_id)
        if trial.state.ended:
            raise FailedPrecondition(f"trial {trial.number} has ended ({trial.state.name}): it cannot change")
        if trial.state == TrialState.WAITING:
            study = await self.study(trial.study_id)
            raise FailedPrecondition(stopped(study.name))
        return None

    async def set_intermediate(self, trial_id: int, step: int, value: float) -> OptunaTrial:
        """Set (or overwrite, as Optuna does) the value at `step`; returns the trial."""
        status = await self._pool.execute(
            """INSERT INTO trial_intermediates (trial_id, step, value)
               SELECT t.id, $2, $3 FROM optuna_trials o JOIN trials t ON t.id = o.trial_id
               WHERE o.id = $1 AND NOT (t.state = ANY($4::smallint[]))
               ON CONFLICT (trial_id, step) DO UPDATE SET value = EXCLUDED.value""",
            trial_id, step, value, _ENDED)
        if status.endswith(" 0"):
            await self._refuse(trial_id)
        return await self.trial(trial_id)

    async def set_trial_attr(self, trial_id: int, *, system: bool, key: str, value: str) -> None:
        column = "system_attrs" if system else "user_attrs"
        status = await self._pool.execute(
            f"""UPDATE optuna_trials o SET {column} = o.{column} || jsonb_build_object($2::text, $3::text)
                FROM trials t WHERE o.id = $1 AND t.id = o.trial_id AND NOT (t.state = ANY($4::smallint[]))""",
            trial_id, key, value, _ENDED)
        if status.endswith(" 0"):
            await self._refuse(trial_id)
