"""A seeded generator of churn data with a small share of dirty rows.

Each user has a signup date, an activity rate and, for some, a churn date after which
they stop transacting. Labels at the start of each month say whether a still-active user
churns within the next 30 days, so features must be taken as of the label's time.
Dirty rows (bad types, nulls, negative amounts, duplicates, unknown categories) give the
contracts something to quarantine.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

DAY_US = 86_400_000_000


def _month(m: int) -> np.datetime64:
    return np.datetime64(f"2026-{m:02d}-01T00:00:00", "us")


@dataclass(frozen=True)
class Timeline:
    start: np.datetime64
    end: np.datetime64
    label_dates: tuple[np.datetime64, ...]
    drift_at: np.datetime64 | None = None
    """From here on, spending, channels and what precedes churn change; the files from
    here on are written to ``arriving/`` (new data that has not landed yet)."""


START = np.datetime64("2025-10-01T00:00:00", "us")
STEADY_END = _month(7)
STEADY = Timeline(START, STEADY_END, tuple(_month(m) for m in (3, 4, 5, 6)))
DRIFTED = Timeline(START, _month(10), tuple(_month(m) for m in range(3, 10)), _month(7))
ARRIVING = "arriving"

CATEGORIES = np.array(
    [
        "grocery",
        "fuel",
        "restaurants",
        "travel",
        "electronics",
        "fashion",
        "health",
        "entertainment",
        "utilities",
        "home",
        "sports",
        "education",
    ]
)
CATEGORY_MEAN = np.array([45, 60, 35, 400, 250, 80, 50, 30, 90, 120, 70, 150], dtype=float)
CHANNELS = np.array(["web", "mobile", "store"])
EVENT_TYPES = np.array(["login", "view", "search", "add_to_cart", "checkout", "support_ticket"])
PLANS = np.array(["free", "basic", "premium"])
COUNTRIES = np.array(["DE", "FR", "NL", "ES", "IT", "PL", "SE"])


@dataclass(frozen=True)
class Scale:
    users: int
    txns: int
    events: int


SCALES = {
    "tiny": Scale(300, 3_000, 6_000),
    "small": Scale(3_000, 30_000, 60_000),
    "medium": Scale(100_000, 1_000_000, 2_000_000),
    "large": Scale(1_000_000, 10_000_000, 20_000_000),
}

DIRTY_SHARE = 0.004


def generate(
    folder: Path, scale: str = "small", seed: int = 7, drift: bool = False
) -> dict[str, int]:
    """Write users, transactions, events and labels below ``folder``; return file counts.

    ``drift``: three more months in which spending rises, mobile takes over and users
    about to churn file support tickets instead of fading out; those months' files go to
    ``folder/../arriving`` with the same layout, to be copied in when "they arrive".
    """
    size = SCALES[scale]
    timeline = DRIFTED if drift else STEADY
    rng = np.random.default_rng(seed)
    users = _users(rng, size.users, timeline)
    counts = {
        "users": _write_users(folder / "users", users, rng),
        "transactions": _write_transactions(
            folder / "transactions", users, rng, size.txns, timeline
        ),
        "events": _write_events(folder / "events", users, rng, size.events, timeline),
        "labels": _write_labels(folder / "labels", users, timeline),
    }
    if timeline.drift_at is not None:
        counts["arriving"] = _hold_back(folder, folder.parent / ARRIVING, timeline.drift_at)
    return counts


def _hold_back(folder: Path, arriving: Path, drift_at: np.datetime64) -> int:
    """Move the files of months from ``drift_at`` on to ``arriving`` (same sub-folders)."""
    cutoff = str(drift_at)[:7].replace("-", "_")
    moved = 0
    for path in sorted(folder.rglob("*_20*")):
        month = path.stem[-7:]
        if month >= cutoff:
            target = arriving / path.parent.relative_to(folder) / path.name
            target.parent.mkdir(parents=True, exist_ok=True)
            path.rename(target)
            moved += 1
    return moved


@dataclass(frozen=True)
class Users:
    ids: np.ndarray
    signup: np.ndarray
    churn: np.ndarray
    """First moment without activity (END for users who never churn)."""
    rate: np.ndarray
    plan: np.ndarray
    country: np.ndarray
    birth_year: np.ndarray


def _users(rng: np.random.Generator, n: int, timeline: Timeline) -> Users:
    START, END = timeline.start, timeline.end  # noqa: N806
    # signups spread over the first 60% of the steady timeline, drift or not
    span = int((STEADY_END - START) / np.timedelta64(1, "us"))
    signup = START + (rng.random(n) * span * 0.6).astype("timedelta64[us]")
    plan = rng.choice(len(PLANS), n, p=[0.5, 0.35, 0.15])
    # Premium users churn less; churn happens some time after signup.
    churn_prob = np.array([0.55, 0.4, 0.2])[plan]
    if END > STEADY_END:  # a longer timeline: as many churners per month as the steady one
        churn_prob = np.minimum(churn_prob * 1.5, 0.95)
    churns = rng.random(n) < churn_prob
    remaining = (END - signup) / np.timedelta64(1, "us")
    churn = signup + (rng.uniform(0.15, 1.0, n) * remaining).astype("timedelta64[us]")
    churn = np.where(churns, churn, END)
    rate = rng.gamma(2.0, 1.0, n) * np.array([0.7, 1.0, 1.6])[plan]
    return Users(
        ids=np.array([f"u_{i:07d}" for i in range(n)]),
        signup=signup,
        churn=churn,
        rate=rate,
        plan=plan,
        country=rng.choice(len(COUNTRIES), n),
        birth_year=rng.integers(1950, 2006, n),
    )


def _activity(
    rng: np.random.Generator, users: Users, n: int, decay: bool, end: np.datetime64
) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``n`` (user index, timestamp) pairs within each user's active period."""
    active = ((users.churn - users.signup) / np.timedelta64(1, "us")).astype(float)
    weight = users.rate * active
    who = rng.choice(len(weight), n, p=weight / weight.sum())
    # Users who will churn fade out: activity concentrates early in their active period.
    u = rng.random(n)
    will_churn = users.churn[who] < end
    if decay:
        u = np.where(will_churn, u**1.6, u)
    ts = users.signup[who] + (u * active[who]).astype("timedelta64[us]")
    return who, ts


def _dirty(rng: np.random.Generator, n: int, share: float = DIRTY_SHARE) -> np.ndarray:
    return rng.random(n) < share


def _write_users(folder: Path, users: Users, rng: np.random.Generator) -> int:
    n = len(users.ids)
    birth = pa.array(users.birth_year.astype(str))
    bad_birth = _dirty(rng, n, DIRTY_SHARE / 2)
    birth = pc.if_else(pa.array(bad_birth), pa.scalar("unknown"), birth)
    plan = PLANS[users.plan].astype(object)
    plan[_dirty(rng, n, DIRTY_SHARE / 2)] = "platinum"
    table = pa.table(
        {
            "user_id": users.ids,
            "signup_ts": pa.array(users.signup, pa.timestamp("us")),
            "plan": plan.astype(str),
            "country": COUNTRIES[users.country],
            "birth_year": birth,
        }
    )
    dup = np.flatnonzero(_dirty(rng, n, DIRTY_SHARE / 2))
    table = pa.concat_tables([table, table.take(dup)])
    folder.mkdir(parents=True, exist_ok=True)
    pacsv.write_csv(table, folder / "users.csv")
    return 1


def _write_transactions(
    folder: Path, users: Users, rng: np.random.Generator, n: int, timeline: Timeline
) -> int:
    who, ts = _activity(rng, users, n, decay=True, end=timeline.end)
    category = rng.choice(len(CATEGORIES), n, p=_category_mix())
    amount = np.round(rng.lognormal(np.log(CATEGORY_MEAN[category]), 0.6), 2)
    after = ts >= timeline.drift_at if timeline.drift_at is not None else None
    if after is not None:  # prices up 70%
        amount = np.where(after, np.round(amount * 1.7, 2), amount)
    negative = _dirty(rng, n)
    amount = np.where(negative, -amount, amount)
    amount_text = pc.cast(pa.array(amount), pa.string())
    amount_text = pc.if_else(pa.array(_dirty(rng, n)), pa.scalar("n/a"), amount_text)
    user_ids = pa.array(users.ids[who])
    user_ids = pc.if_else(pa.array(_dirty(rng, n)), pa.scalar(None, pa.string()), user_ids)
    channel = rng.choice(3, n, p=[0.45, 0.4, 0.15])
    if after is not None:  # mobile takes over
        channel = np.where(after, rng.choice(3, n, p=[0.15, 0.75, 0.1]), channel)
    table = pa.table(
        {
            "txn_id": pa.array(np.char.add("t_", np.arange(n).astype(str))),
            "user_id": user_ids,
            "ts": pa.array(ts, pa.timestamp("us")),
            "amount": amount_text,
            "merchant_category": CATEGORIES[category],
            "channel": CHANNELS[channel],
        }
    )
    dup = np.flatnonzero(_dirty(rng, n, DIRTY_SHARE / 2))
    table = pa.concat_tables([table, table.take(dup)])
    return _write_monthly(folder, table, "transactions", "csv")


def _category_mix() -> np.ndarray:
    weights = np.array([20, 10, 15, 2, 4, 8, 6, 10, 8, 6, 5, 6], dtype=float)
    return cast(np.ndarray, weights / weights.sum())


def _write_events(
    folder: Path, users: Users, rng: np.random.Generator, n: int, timeline: Timeline
) -> int:
    who, ts = _activity(rng, users, n, decay=True, end=timeline.end)
    will_churn = users.churn[who] < timeline.end
    probs = np.array([[0.25, 0.35, 0.18, 0.1, 0.1, 0.02], [0.22, 0.33, 0.17, 0.08, 0.06, 0.14]])
    kind = np.where(
        will_churn,
        rng.choice(6, n, p=probs[1]),
        rng.choice(6, n, p=probs[0]),
    )
    if timeline.drift_at is not None:  # users about to churn now complain first
        soon = will_churn & (ts >= timeline.drift_at)
        soon &= users.churn[who] - ts < np.timedelta64(30 * DAY_US, "us")
        complaints = rng.choice(6, n, p=[0.1, 0.2, 0.1, 0.05, 0.05, 0.5])
        kind = np.where(soon, complaints, kind)
    event_type = EVENT_TYPES[kind].astype(object)
    event_type[_dirty(rng, n)] = "unknown_event"
    user_ids = pa.array(users.ids[who])
    user_ids = pc.if_else(pa.array(_dirty(rng, n)), pa.scalar(None, pa.string()), user_ids)
    table = pa.table(
        {
            "event_id": pa.array(np.char.add("e_", np.arange(n).astype(str))),
            "user_id": user_ids,
            "ts": pa.array(ts, pa.timestamp("us")),
            "event_type": pa.array(event_type.astype(str)),
            "device": CHANNELS[rng.choice(2, n)],
            "duration_s": rng.exponential(40, n).round(1),
        }
    )
    return _write_monthly(folder, table, "events", "parquet")


def _write_monthly(folder: Path, table: pa.Table, stem: str, fmt: str) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    months = pc.strftime(table["ts"], format="%Y_%m")
    files = 0
    for month in sorted(pc.unique(months).to_pylist()):
        part = table.filter(pc.equal(months, month))
        path = folder / f"{stem}_{month}.{fmt}"
        if fmt == "csv":
            pacsv.write_csv(part, path)
        else:
            pq.write_table(part, path)
        files += 1
    return files


def _write_labels(folder: Path, users: Users, timeline: Timeline) -> int:
    """At each label date, every user active then is labelled: churns in the next 30 days?

    One file, or with drift one file per label date (they arrive month by month)."""
    END = timeline.end  # noqa: N806
    rows = []
    for at in timeline.label_dates:
        active = (users.signup < at) & (users.churn > at)
        # END marks "never churned", so it must not count as churning in the last window
        ends = users.churn[active]
        churned = (ends <= at + np.timedelta64(30 * DAY_US, "us")) & (ends < END)
        rows.append(
            pa.table(
                {
                    "user_id": users.ids[active],
                    "label_ts": pa.array(np.full(active.sum(), at), pa.timestamp("us")),
                    "churned": churned.astype(int),
                }
            )
        )
    folder.mkdir(parents=True, exist_ok=True)
    if timeline.drift_at is None:
        _write_jsonl(folder / "churn_labels.jsonl", pa.concat_tables(rows))
        return 1
    for at, part in zip(timeline.label_dates, rows, strict=True):
        month = str(at)[:7].replace("-", "_")
        _write_jsonl(folder / f"churn_labels_{month}.jsonl", part)
    return len(rows)


def _write_jsonl(path: Path, table: pa.Table) -> None:
    with open(path, "wb") as handle:
        for user_id, label_ts, churned in zip(
            table["user_id"].to_pylist(),
            pc.strftime(table["label_ts"], format="%Y-%m-%dT%H:%M:%S").to_pylist(),
            table["churned"].to_pylist(),
            strict=True,
        ):
            handle.write(
                orjson.dumps({"user_id": user_id, "label_ts": label_ts, "churned": churned}) + b"\n"
            )
