-- Monthly spend per merchant category and channel.
select
    date_trunc('month', ts) as month,
    merchant_category,
    channel,
    count(*) as transactions,
    count(distinct user_id) as users,
    -- exact decimals (cents): the same sum in any order, so every rebuild is identical
    cast(sum(cast(amount as decimal(18, 2))) as double) as amount_sum
from transactions
group by all
order by month, merchant_category, channel
