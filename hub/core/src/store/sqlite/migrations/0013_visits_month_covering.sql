-- Version 13 (after the other engineer's 12): a provider's month is read from one index,
-- in one sequential pass, without touching the visits table.
--
-- Verification and the follow-up read a provider's visits of a month. Through
-- `visits_provider_month (provider, month)` each row was then fetched from the table, and
-- since visits arrive mixed (all providers, day by day) every table page was read once per
-- provider with a row on it, about six times over a month (BENCHMARKS.md, "A month in one
-- pass"). This index carries every column those reads need, ordered by order and check-in,
-- so a provider's month is one contiguous range of it. It replaces `visits_provider_month`
-- (same leading columns, so the queries that used that one use this one): intake still
-- writes one index entry per visit for it, a larger one.
CREATE INDEX visits_provider_month_cover ON visits(
    provider, month, order_id, check_in, check_out, outcome, visit_outcome, planned_minutes, manual, seconds, staff
);
DROP INDEX visits_provider_month;
