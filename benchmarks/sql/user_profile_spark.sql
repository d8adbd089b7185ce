-- The churn example's user_profile in Spark SQL, the same plan as the DuckDB version
-- (Spark has no ASOF JOIN: recency is a grouped non-equi join instead).
-- Month starts from 2025-11-01 up to the one after the newest transaction.
with bounds as (
    select date_trunc('month', max(ts)) + interval 1 month as last_as_of from transactions
),
snapshots as (
    select explode(sequence(timestamp'2025-11-01 00:00:00', b.last_as_of, interval 1 month)) as as_of
    from bounds b
),
spine as (
    select u.user_id, s.as_of, u.plan, u.country, u.signup_ts
    from users u
    join snapshots s on u.signup_ts < s.as_of
),
-- As in the DuckDB version: each row is expanded to the month starts it counts towards.
txn_snapshots as (
    select *
    from (
        select
            user_id, ts, amount, merchant_category, channel,
            explode(sequence(date_trunc('MONTH', ts) + interval 1 month,
                             ts + interval 90 days, interval 1 month)) as as_of
        from transactions
    )
    where as_of <= (select last_as_of from bounds)
),
txn_windows as (
    select
        user_id,
        as_of,
        count(*) filter (where ts >= as_of - interval 7 days) as txn_count_7d,
        count(*) filter (where ts >= as_of - interval 30 days) as txn_count_30d,
        count(*) as txn_count_90d,
        -- rounded: parallel float sums differ in the last bit from run to run; money in
        -- cents makes every rebuild (and so the model trained on it) bit-identical
        round(sum(amount) filter (where ts >= as_of - interval 7 days), 2) as amount_sum_7d,
        round(sum(amount) filter (where ts >= as_of - interval 30 days), 2) as amount_sum_30d,
        round(sum(amount), 2) as amount_sum_90d,
        round(avg(amount), 4) as amount_avg_90d,
        count(distinct merchant_category) as category_diversity_90d,
        count(distinct channel) as channel_count_90d
    from txn_snapshots
    where as_of >= timestamp'2025-11-01 00:00:00'
    group by user_id, as_of
),
event_snapshots as (
    select *
    from (
        select
            user_id, ts, event_type, duration_s,
            -- Spark's sequence() fails when start > stop, where DuckDB returns nothing
            explode(case
                when date_trunc('MONTH', ts) + interval 1 month <= ts + interval 30 days
                then sequence(date_trunc('MONTH', ts) + interval 1 month,
                              ts + interval 30 days, interval 1 month)
                else array() end) as as_of
        from events
    )
    where as_of >= timestamp'2025-11-01 00:00:00' and as_of <= (select last_as_of from bounds)
),
event_windows as (
    select
        user_id,
        as_of,
        count(*) filter (where ts >= as_of - interval 7 days) as event_count_7d,
        count(*) as event_count_30d,
        count(*) filter (where event_type = 'login') as logins_30d,
        count(*) filter (where event_type = 'support_ticket') as support_tickets_30d,
        round(sum(duration_s), 3) as session_seconds_30d
    from event_snapshots
    group by user_id, as_of
),
last_txn as (
    select sp.user_id, sp.as_of, max(t.ts) as last_txn_ts
    from spine sp
    join transactions t on sp.user_id = t.user_id and t.ts < sp.as_of
    group by sp.user_id, sp.as_of
)
select
    sp.user_id,
    sp.as_of,
    sp.plan,
    sp.country,
    cast(floor((unix_timestamp(sp.as_of) - unix_timestamp(sp.signup_ts)) / 86400) as int) as tenure_days,
    coalesce(tw.txn_count_7d, 0) as txn_count_7d,
    coalesce(tw.txn_count_30d, 0) as txn_count_30d,
    coalesce(tw.txn_count_90d, 0) as txn_count_90d,
    coalesce(tw.amount_sum_7d, 0) as amount_sum_7d,
    coalesce(tw.amount_sum_30d, 0) as amount_sum_30d,
    coalesce(tw.amount_sum_90d, 0) as amount_sum_90d,
    tw.amount_avg_90d,
    coalesce(tw.category_diversity_90d, 0) as category_diversity_90d,
    coalesce(tw.channel_count_90d, 0) as channel_count_90d,
    coalesce(ew.event_count_7d, 0) as event_count_7d,
    coalesce(ew.event_count_30d, 0) as event_count_30d,
    coalesce(ew.logins_30d, 0) as logins_30d,
    coalesce(ew.support_tickets_30d, 0) as support_tickets_30d,
    coalesce(ew.session_seconds_30d, 0) as session_seconds_30d,
    cast(floor((unix_timestamp(sp.as_of) - unix_timestamp(lt.last_txn_ts)) / 86400) as int) as days_since_last_txn
from spine sp
left join txn_windows tw on tw.user_id = sp.user_id and tw.as_of = sp.as_of
left join event_windows ew on ew.user_id = sp.user_id and ew.as_of = sp.as_of
left join last_txn lt on lt.user_id = sp.user_id and lt.as_of = sp.as_of
