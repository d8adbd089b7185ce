"""The churn example's sources: CSV, Parquet and JSON-lines files under data/, each
with its contract (rows that break it are quarantined with the reason).

`gristmill init --live` replaces the part between the two "----" lines: users in
PostgreSQL, transactions in MariaDB, events in NATS JetStream.
"""

from __future__ import annotations

import gristmill as gm

PLANS = ["free", "basic", "premium"]
CHANNELS = ["web", "mobile", "store"]
CATEGORIES = [
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
EVENT_TYPES = ["login", "view", "search", "add_to_cart", "checkout", "support_ticket"]

# ---- users, transactions and events: files ----
users = gm.source(
    "users",
    "data/users/*.csv",
    columns={
        "user_id": "VARCHAR",
        "signup_ts": "TIMESTAMP",
        "plan": "VARCHAR",
        "country": "VARCHAR",
        "birth_year": "INTEGER",
    },
    checks=[
        gm.not_null("user_id", "signup_ts", "plan"),
        gm.unique("user_id"),
        gm.matches("user_id", r"u_\d{7}"),
        gm.accepted_values("plan", PLANS),
        gm.in_range("birth_year", min=1900, max=2015),
    ],
    description="Registered users, one CSV export.",
)

transactions = gm.source(
    "transactions",
    "data/transactions/*.csv",
    columns={
        "txn_id": "VARCHAR",
        "user_id": "VARCHAR",
        "ts": "TIMESTAMP",
        "amount": "DOUBLE",
        "merchant_category": "VARCHAR",
        "channel": "VARCHAR",
    },
    checks=[
        gm.not_null("txn_id", "user_id", "ts", "amount"),
        gm.unique("txn_id"),
        gm.in_range("amount", min=0),
        gm.accepted_values("merchant_category", CATEGORIES),
        gm.accepted_values("channel", CHANNELS),
    ],
    description="Card transactions, one CSV file per month.",
)

events = gm.source(
    "events",
    "data/events/*.parquet",
    columns={
        "event_id": "VARCHAR",
        "user_id": "VARCHAR",
        "ts": "TIMESTAMP",
        "event_type": "VARCHAR",
        "device": "VARCHAR",
        "duration_s": "DOUBLE",
    },
    checks=[
        gm.not_null("event_id", "user_id", "ts"),
        gm.unique("event_id"),
        gm.accepted_values("event_type", EVENT_TYPES),
    ],
    description="Clickstream events, one Parquet file per month.",
)

# ----

churn_labels = gm.source(
    "churn_labels",
    "data/labels/*.jsonl",
    columns={"user_id": "VARCHAR", "label_ts": "TIMESTAMP", "churned": "INTEGER"},
    checks=[
        gm.not_null("user_id", "label_ts", "churned"),
        gm.unique("user_id", "label_ts"),
        gm.accepted_values("churned", [0, 1]),
    ],
    description="Did a user active at label_ts churn within 30 days? (entity, time, label)",
)
