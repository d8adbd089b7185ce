"""Feature views, Python steps, models, services and monitors of the churn example.

Its sources are in sources.py; SQL steps live in sql/*.sql and are named after their
file; they read other tables (and sources) by name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import gristmill as gm

if TYPE_CHECKING:  # heavy libraries are imported inside the steps that use them: every
    import pyarrow as pa  # command loads this file, and most never run a Python step

user_profile = gm.feature_view(
    "user_profile",
    entity="user_id",
    timestamp="as_of",
    checks=[
        gm.not_null("user_id", "as_of"),
        gm.unique("user_id", "as_of"),
        gm.in_range("category_diversity_90d", min=0, max=12),  # the 12 merchant categories
    ],
    row_count=gm.row_count(min=1),
    # one partition per month start; a run builds the missing and stale months together
    # (one query and one commit for up to 24 of them); `gristmill backfill user_profile`
    # plans a range. Its 90-day windows read earlier months: a changed input stales
    # every month (no upstream= mapping, which would claim a row touches only its month).
    partitions=gm.monthly("as_of", start="2025-11", end_offset=1, batch=24),
    description="Per user and month start: windowed spend, activity, recency and diversity.",
)


@gm.table
def churn_rate_by_month(churn_labels: pa.Table) -> pa.Table:
    """Share of labelled users who churned, per label date (a Python step over Arrow)."""
    import pyarrow.compute as pc

    grouped = churn_labels.group_by("label_ts").aggregate(
        [("churned", "mean"), ("churned", "count")]
    )
    grouped = grouped.rename_columns(["label_ts", "churn_rate", "users"])
    return grouped.sort_by("label_ts").set_column(
        1, "churn_rate", pc.round(grouped.sort_by("label_ts")["churn_rate"], 4)
    )


churn_training = gm.training_set(
    "churn_training",
    labels="churn_labels",
    entity="user_id",
    timestamp="label_ts",
    label="churned",
    # each label takes the user's latest monthly profile at or before its time
    features=[gm.features("user_profile", ttl="45d")],
    description="Churn labels with the user's profile as it was at the label's time.",
)

churn = gm.model(
    "churn",
    training_set="churn_training",
    # shallow trees: the example has a few thousand labelled users
    estimator=gm.lightgbm(n_estimators=150, learning_rate=0.05, num_leaves=4, min_data_in_leaf=100),
    split=gm.time_split(test_fraction=0.25),  # train on the past, test on the latest labels
    threshold=0.2,  # about 1 in 9 users churns: flag the riskiest
    gates=[
        "roc_auc >= 0.60",
        "roc_auc >= champion.roc_auc - 0.005",
    ],
    intended_use="Rank active users by their risk of churning in the next 30 days, "
    "to choose who gets a retention offer.",
    limitations="Trained on synthetic data; users active less than a month have sparse "
    "features. Not for decisions about individuals without human review.",
    description="Will an active user churn within 30 days?",
)

churn_service = gm.service(
    "churn",
    model="churn",
    alias="champion",
    lookups=["user_profile"],  # a request names user_id; the profile comes from the store
    policy=gm.decision({"retention_offer": 0.3, "watch": 0.15}, default="none", reasons=3),
    description="Real-time churn risk with a retention decision and its reasons.",
)

# ---- monitoring: is the model still right? -----------------------------------------------

churn_drift = gm.drift_monitor(
    "churn_drift",
    service="churn",
    # the newest month of labelled users, with their profiles as the model would see them
    current="churn_training",
    window="30d",
    exclude=["tenure_days"],  # grows month by month by design: not drift
    thresholds={"psi": 0.2, "null_rate": 0.1, "new_categories": 0.01},
    # retrain on the fresh training set; the new version replaces the champion only if it
    # passes the gates (approval="manual" would leave it pending for `gristmill promote`)
    on_alert=gm.retrain(approval="auto"),
    description="Features and score of the newest labelled month vs the champion's training set.",
)

churn_live_drift = gm.drift_monitor(
    "churn_live_drift",
    service="churn",
    current="log",  # what the service answered in the last day
    window="1d",
    exclude=["tenure_days"],
    min_rows=50,
    description="Features and score of served requests vs the champion's training set.",
)

churn_performance = gm.performance_monitor(
    "churn_performance",
    service="churn",
    predictions="churn__predictions",  # batch scores from `gristmill score churn ...`
    labels="churn_labels",
    label="churned",
    timestamp="label_ts",
    horizon="31d",
    window="30d",
    metric="roc_auc",
    max_drop=0.03,
    description="ROC AUC of the latest scored month once its labels arrived.",
)

transactions_quality = gm.quality_monitor(
    "transactions_quality",
    table="transactions",
    volume_change=1.0,
    max_quarantine_share=0.02,  # the example's files carry ~1.4% dirty rows by design
    distribution_psi=0.2,
    columns=["amount", "merchant_category", "channel"],
    description="Every new month of transactions: volume, quarantine share, distributions.",
)

# ---- orchestration: nobody has to type `gristmill run` ------------------------------------

nightly = gm.schedule(
    "nightly",
    cron="30 2 * * *",
    timezone="Europe/Berlin",
    select="+churn",  # everything the model needs, then the model (only what is stale)
    catchup="latest",  # a scheduler that was down runs the newest missed night, once
    description="Every night at 02:30: rebuild what changed, up to the churn model.",
)

new_transactions = gm.sensor(
    "new_transactions",
    on=gm.new_data("transactions"),  # new files in data/transactions/ (or rows, --live)
    # no select: everything stale is built (a month's events arrive with its transactions),
    # then the monitors whose inputs changed are evaluated
    description="New transaction files: ingest and rebuild, with nobody typing.",
)
