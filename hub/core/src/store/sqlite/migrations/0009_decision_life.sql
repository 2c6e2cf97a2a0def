-- A decision's life (SPEC §3, §4.4): its versions, the orders a decision has over time, and
-- what providers report back about clients.

-- Every version of a decision as it arrived: version 0 is the decision as first sent, each
-- change adds one. `decisions.canonical` holds the decision as it stands after the latest.
CREATE TABLE decision_versions (
    decision_id    TEXT NOT NULL REFERENCES decisions(id),
    version        INTEGER NOT NULL,
    effective_from TEXT NOT NULL,
    kind           TEXT NOT NULL,          -- decision | services | end_date | ended | paused | new_provider
    canonical      TEXT NOT NULL,
    system         TEXT NOT NULL,
    received_at    TEXT NOT NULL,
    PRIMARY KEY (decision_id, version)
);
INSERT INTO decision_versions (decision_id, version, effective_from, kind, canonical, system, received_at)
SELECT id, 0, COALESCE(json_extract(canonical, '$.valid_from'), substr(received_at, 1, 10)), 'decision', canonical, system,
       received_at
FROM decisions;
ALTER TABLE decisions ADD COLUMN version INTEGER NOT NULL DEFAULT 0;

-- A decision has several orders once its client switches provider.
CREATE INDEX orders_decision ON orders(decision_id);
-- The order's pauses as a JSON array of [from, to] pairs (NULL: none), so that VIS009 can
-- tell a paused day without reading the whole order.
ALTER TABLE orders ADD COLUMN paused TEXT;

-- Deviations (avvikelser) and changes of need (bevakningar) from providers.
CREATE TABLE provider_reports (
    id           TEXT PRIMARY KEY,        -- namespaced by the sending system
    message_type TEXT NOT NULL,           -- deviation | need_change
    kind         TEXT NOT NULL,           -- a deviation's kind, or a need change's direction
    severity     TEXT,
    provider     TEXT NOT NULL,
    client       TEXT NOT NULL,
    order_id     TEXT,
    day          TEXT NOT NULL,           -- occurred_on / noticed_on
    month        TEXT NOT NULL,           -- YYYY-MM of `day`
    system       TEXT NOT NULL,
    canonical    TEXT NOT NULL,
    received_at  TEXT NOT NULL
);
CREATE INDEX provider_reports_month ON provider_reports(month, provider);
CREATE INDEX provider_reports_order ON provider_reports(order_id) WHERE order_id IS NOT NULL;
