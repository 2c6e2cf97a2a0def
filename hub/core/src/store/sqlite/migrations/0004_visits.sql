-- Version 4: visits, and what validating them needs.

-- An order's validity, as columns, so "an active order for this client at this provider on
-- that day" (VIS009) is an index look-up. Older rows are filled from their canonical form.
ALTER TABLE orders ADD COLUMN start_date TEXT;
ALTER TABLE orders ADD COLUMN end_date TEXT;
UPDATE orders SET start_date = json_extract(canonical, '$.start_date'),
                  end_date = json_extract(canonical, '$.end_date');
CREATE INDEX orders_client_provider ON orders(client, provider, start_date);

-- Every visit received, with its validation outcome and codes; rejected ones too.
-- A copy of a visit already received (VIS007) is not stored again.
CREATE TABLE visits (
    id              INTEGER PRIMARY KEY,
    source_id       TEXT NOT NULL UNIQUE,   -- phoniro:V-88121 (or a digest id)
    system          TEXT NOT NULL,          -- the system that sent it
    provider        TEXT,
    client          TEXT NOT NULL,          -- as sent (VIS010 keeps invalid ones)
    order_id        TEXT,                   -- the active order it belongs to
    staff           TEXT NOT NULL,
    check_in        TEXT NOT NULL,          -- UTC, fixed width
    check_out       TEXT,
    month           TEXT NOT NULL,          -- the check-in's month in Stockholm, YYYY-MM
    seconds         INTEGER,                -- check-out minus check-in
    planned_minutes INTEGER,
    visit_outcome   TEXT NOT NULL,          -- performed | declined_at_door | cancelled_in_advance
    manual          INTEGER NOT NULL,       -- counts in the manual share
    outcome         TEXT NOT NULL,          -- accepted | flagged | rejected
    codes           TEXT NOT NULL,          -- space-separated, '' when none
    findings        TEXT NOT NULL,          -- JSON: [{code, detail}]
    canonical       TEXT NOT NULL,
    log_seq         INTEGER NOT NULL,       -- the message it came in
    line            INTEGER,                -- its line in a file
    received_at     TEXT NOT NULL
);
-- VIS005 and VIS007: one staff member's visits by time.
CREATE INDEX visits_staff ON visits(staff, check_in);
-- Reports, verification and follow-up read a provider's month. An order's or a client's
-- visits are read through it too (an order names its provider; a client's orders name
-- theirs), and visits without an order (VIS009) through the small index after it. An index
-- keyed by order or client over every visit would cost each batch one random page write
-- per visit (visits arrive spread over thousands of homes) for queries that are rare and
-- fast enough this way (BENCHMARKS.md).
CREATE INDEX visits_provider_month ON visits(provider, month);
CREATE INDEX visits_client_without_order ON visits(client) WHERE order_id IS NULL;

-- Where a pulled feed (Phoniro's visits) stands, committed with the page it came with.
CREATE TABLE feed_cursors (
    system     TEXT PRIMARY KEY,
    cursor     TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

-- Months the municipality has closed: a visit in one is refused (VIS006).
CREATE TABLE closed_months (
    month     TEXT PRIMARY KEY,
    closed_at TEXT NOT NULL
);

-- How far a background job has come through a table, by id: the visit reports to
-- case-management systems go out in id order, and their watermark moves in the commit that
-- queues them (no per-row flag to update).
CREATE TABLE progress (
    name    TEXT PRIMARY KEY,
    through INTEGER NOT NULL
);
