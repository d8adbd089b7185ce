-- Monthly spend per merchant category and channel.
select
    date_trunc('month', ts) as month,
    merchant_category,
    channel,
    count(*) as transactions,
    count(distinct user_id) as users,
    round(sum(amount), 2) as amount_sum
from transactions
group by all
order by month, merchant_category, channel
