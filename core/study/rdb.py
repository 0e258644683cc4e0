"""Narrow queries on Optuna's RDB tables (PostgreSQL, MySQL, sqlite), for a queue of many
thousand trials: Optuna's public API reads every trial with all its attributes to answer
"which trial waits?" or "how many are done?", which made a claim take 3.1 s at 10,000 trials
on PostgreSQL. Here the next WAITING trial is one indexed query, counts are a GROUP BY, and a
bulk enqueue is one transaction. The transition that makes a claim exactly-once stays Optuna's
(`set_trial_state_values(..., RUNNING)` under SELECT ... FOR UPDATE).

These use Optuna's table models (`optuna.storages._rdb.models`), a private module whose schema
Optuna migrates with alembic; `tests/test_queue.py` runs every query here against a real
sqlite storage, and `tests/e2e/test_queue_scale.py` against PostgreSQL, so an Optuna upgrade
that changes it fails there, not in a study."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from optuna.storages import RDBStorage
from optuna.storages._rdb import models
from optuna.trial import TrialState
from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session


@dataclass
class Light:
    """A queue trial without its config: what polling, listing and bookkeeping read. Shaped
    like Optuna's FrozenTrial where they overlap (`number`, `state`, `user_attrs`,
    `_trial_id`), so `lifecycle.lost` and friends take either."""

    _trial_id: int
    number: int
    state: TrialState
    user_attrs: dict[str, Any] = field(default_factory=dict)


def waiting_ids(storage: RDBStorage, study_id: int, limit: int,
                attr: tuple[str, Any] | None = None) -> list[int]:
    """The first `limit` WAITING trials' ids, oldest first; with `attr` (key, value) only
    those whose user attr has that value (a pack's siblings)."""
    q = select(models.TrialModel.trial_id).where(
        models.TrialModel.study_id == study_id,
        models.TrialModel.state == TrialState.WAITING)
    if attr is not None:
        ua = models.TrialUserAttributeModel
        q = q.join(ua, ua.trial_id == models.TrialModel.trial_id).where(
            ua.key == attr[0], ua.value_json == json.dumps(attr[1]))
    with Session(storage.engine) as s:
        return list(s.scalars(q.order_by(models.TrialModel.trial_id).limit(limit)))


def counts(storage: RDBStorage, study_id: int) -> dict[TrialState, int]:
    q = select(models.TrialModel.state, func.count()).where(
        models.TrialModel.study_id == study_id).group_by(models.TrialModel.state)
    with Session(storage.engine) as s:
        return {state: int(n) for state, n in s.execute(q)}


def light(storage: RDBStorage, study_id: int, keys: Sequence[str],
          states: Iterable[TrialState] | None = None) -> list[Light]:
    """Every trial of the study (in `states`) with only the user attrs named by `keys`."""
    t, ua = models.TrialModel, models.TrialUserAttributeModel
    q = select(t.trial_id, t.number, t.state).where(t.study_id == study_id)
    if states is not None:
        q = q.where(t.state.in_(list(states)))
    attrs = select(ua.trial_id, ua.key, ua.value_json).join(t, t.trial_id == ua.trial_id).where(
        t.study_id == study_id, ua.key.in_(list(keys)))
    if states is not None:
        attrs = attrs.where(t.state.in_(list(states)))
    with Session(storage.engine) as s:
        out = {tid: Light(tid, n, st) for tid, n, st in s.execute(q.order_by(t.trial_id))}
        for tid, key, value in s.execute(attrs):
            if tid in out:
                out[tid].user_attrs[key] = json.loads(value)
    return list(out.values())


def enqueue_many(storage: RDBStorage, study_id: int,
                 attrs: Sequence[dict[str, Any]]) -> int:
    """WAITING trials with these user attrs, in one transaction, as Optuna's `enqueue_trial`
    would make them one by one (no fixed params; numbers in order). The study row is locked
    as Optuna locks it to create a trial, so numbers stay unique alongside other writers."""
    if not attrs:
        return 0
    t = models.TrialModel
    with Session(storage.engine) as s, s.begin():
        s.execute(select(models.StudyModel.study_id).where(
            models.StudyModel.study_id == study_id).with_for_update())
        base = int(s.scalar(select(func.count(t.trial_id)).where(t.study_id == study_id)) or 0)
        ids = list(s.scalars(
            insert(t).returning(t.trial_id, sort_by_parameter_order=True),
            [{"study_id": study_id, "number": base + i, "state": TrialState.WAITING,
              "datetime_start": None, "datetime_complete": None} for i in range(len(attrs))]))
        s.execute(insert(models.TrialUserAttributeModel),
                  [{"trial_id": tid, "key": k, "value_json": json.dumps(v)}
                   for tid, a in zip(ids, attrs, strict=True) for k, v in a.items()])
        s.execute(insert(models.TrialSystemAttributeModel),
                  [{"trial_id": tid, "key": "fixed_params", "value_json": "{}"} for tid in ids])
    return len(ids)
