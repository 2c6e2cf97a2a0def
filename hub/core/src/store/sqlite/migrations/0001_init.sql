-- carehub schema, version 1: the message log, decisions, orders and the outbox.
-- Times are UTC text of one fixed width (2026-11-22T10:48:00.000000Z) so they sort as text.

CREATE TABLE message_log (
    seq           INTEGER PRIMARY KEY,
    at            TEXT NOT NULL,
    system        TEXT NOT NULL,
    vendor        TEXT NOT NULL,
    direction     TEXT NOT NULL,           -- in | out
    message_type  TEXT NOT NULL,
    content_type  TEXT NOT NULL,
    payload       BLOB NOT NULL,
    canonical     TEXT,
    status        TEXT NOT NULL,
    error_code    TEXT,
    error_message TEXT,
    decision_id   TEXT,
    order_id      TEXT,
    client        TEXT,
    provider      TEXT,
    delivery_key  TEXT,
    prev_hash     TEXT NOT NULL,
    hash          TEXT NOT NULL
);
CREATE INDEX message_log_order ON message_log(order_id) WHERE order_id IS NOT NULL;
CREATE INDEX message_log_decision ON message_log(decision_id) WHERE decision_id IS NOT NULL;
CREATE INDEX message_log_client ON message_log(client) WHERE client IS NOT NULL;
CREATE INDEX message_log_provider ON message_log(provider) WHERE provider IS NOT NULL;
CREATE INDEX message_log_at ON message_log(at);

-- The log is append-only: the database itself refuses to change or remove an entry.
CREATE TRIGGER message_log_no_update BEFORE UPDATE ON message_log
BEGIN SELECT RAISE(ABORT, 'the message log is append-only'); END;
CREATE TRIGGER message_log_no_delete BEFORE DELETE ON message_log
BEGIN SELECT RAISE(ABORT, 'the message log is append-only'); END;

-- Who read the log (the log holds personal identity numbers; its reads are recorded).
CREATE TABLE log_reads (
    id      INTEGER PRIMARY KEY,
    at      TEXT NOT NULL,
    subject TEXT NOT NULL,
    role    TEXT NOT NULL,
    what    TEXT NOT NULL
);

CREATE TABLE decisions (
    id           TEXT PRIMARY KEY,
    system       TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    client       TEXT NOT NULL,
    provider     TEXT NOT NULL,
    canonical    TEXT NOT NULL,
    received_at  TEXT NOT NULL
);

CREATE TABLE orders (
    id                  TEXT PRIMARY KEY,
    decision_id         TEXT NOT NULL REFERENCES decisions(id),
    source_system       TEXT NOT NULL,
    provider            TEXT NOT NULL,
    provider_system     TEXT NOT NULL,
    client              TEXT NOT NULL,
    execute_by          TEXT NOT NULL,
    plan_due            TEXT NOT NULL,
    canonical           TEXT NOT NULL,
    created_at          TEXT NOT NULL,
    status              TEXT NOT NULL,     -- queued | delivered | dead_letter | accepted | rejected
    delivered_at        TEXT,
    ack_status          TEXT,
    ack_reason          TEXT,
    acked_at            TEXT,
    plan_established_on TEXT,
    plan_received_at    TEXT
);
CREATE INDEX orders_provider ON orders(provider);
CREATE INDEX orders_unconfirmed ON orders(execute_by) WHERE acked_at IS NULL;
CREATE INDEX orders_without_plan ON orders(plan_due) WHERE plan_established_on IS NULL;

-- Everything the hub sends goes through here: one delivery loop, retries, dead letters.
CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY,
    system          TEXT NOT NULL,
    message_type    TEXT NOT NULL,
    order_id        TEXT,
    idempotency_key TEXT NOT NULL UNIQUE,
    content_type    TEXT NOT NULL,
    endpoint        TEXT,
    body            BLOB NOT NULL,
    state           TEXT NOT NULL,         -- pending | delivered | dead
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    lease_owner     TEXT,
    lease_until     TEXT,
    last_error      TEXT,
    created_at      TEXT NOT NULL,
    delivered_at    TEXT
);
CREATE INDEX outbox_due ON outbox(next_attempt_at) WHERE state = 'pending';
CREATE INDEX outbox_order ON outbox(order_id);
CREATE INDEX outbox_dead ON outbox(state) WHERE state = 'dead';
