-- carehub schema on PostgreSQL, version 1: what SQLite's migrations 1 to 9 built, at once.
--
-- Times and dates are the same fixed-width UTC text as SQLite keeps
-- (2026-11-22T10:48:00.000000Z): they are hashed into the message log in that form, they
-- sort as text, and both backends then compare them the same way. Every text column is
-- collated "C" (byte order), as SQLite compares, whatever the database's own collation.
-- JSON stays text too (canonical forms are hashed and read back byte for byte); the few
-- queries that look inside cast it to jsonb.

-- The chain's sequencer: one row, locked FOR UPDATE by every commit that appends to the
-- log, so appends from every node take one place after another in one hash chain.
CREATE TABLE chain_head (
    id   SMALLINT PRIMARY KEY CHECK (id = 1),
    seq  BIGINT NOT NULL,
    hash TEXT COLLATE "C" NOT NULL
);
INSERT INTO chain_head (id, seq, hash)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');

CREATE TABLE message_log (
    seq           BIGINT PRIMARY KEY,
    at            TEXT COLLATE "C" NOT NULL,
    system        TEXT COLLATE "C" NOT NULL,
    vendor        TEXT COLLATE "C" NOT NULL,
    direction     TEXT COLLATE "C" NOT NULL,           -- in | out
    message_type  TEXT COLLATE "C" NOT NULL,
    content_type  TEXT COLLATE "C" NOT NULL,
    payload       BYTEA NOT NULL,
    canonical     TEXT COLLATE "C",
    status        TEXT COLLATE "C" NOT NULL,
    error_code    TEXT COLLATE "C",
    error_message TEXT COLLATE "C",
    decision_id   TEXT COLLATE "C",
    order_id      TEXT COLLATE "C",
    client        TEXT COLLATE "C",
    provider      TEXT COLLATE "C",
    delivery_key  TEXT COLLATE "C",
    prev_hash     TEXT COLLATE "C" NOT NULL,
    hash          TEXT COLLATE "C" NOT NULL
);
CREATE INDEX message_log_order ON message_log(order_id) WHERE order_id IS NOT NULL;
CREATE INDEX message_log_decision ON message_log(decision_id) WHERE decision_id IS NOT NULL;
CREATE INDEX message_log_client ON message_log(client) WHERE client IS NOT NULL;
CREATE INDEX message_log_provider ON message_log(provider) WHERE provider IS NOT NULL;
CREATE INDEX message_log_at ON message_log(at);

-- The log is append-only: the database itself refuses to change or remove an entry.
CREATE FUNCTION message_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the message log is append-only';
END
$$;
CREATE TRIGGER message_log_no_update BEFORE UPDATE OR DELETE ON message_log
    FOR EACH ROW EXECUTE FUNCTION message_log_append_only();
CREATE TRIGGER message_log_no_truncate BEFORE TRUNCATE ON message_log
    FOR EACH STATEMENT EXECUTE FUNCTION message_log_append_only();

-- An entry's further (client, order) pairs, so searches by either find it (SQLite's v7).
CREATE TABLE log_links (
    seq      BIGINT NOT NULL,
    client   TEXT COLLATE "C",
    order_id TEXT COLLATE "C"
);
CREATE INDEX log_links_seq ON log_links(seq);
CREATE INDEX log_links_client ON log_links(client) WHERE client IS NOT NULL;
CREATE INDEX log_links_order ON log_links(order_id) WHERE order_id IS NOT NULL;

-- Who read the log (the log holds personal identity numbers; its reads are recorded).
CREATE TABLE log_reads (
    id      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at      TEXT COLLATE "C" NOT NULL,
    subject TEXT COLLATE "C" NOT NULL,
    role    TEXT COLLATE "C" NOT NULL,
    what    TEXT COLLATE "C" NOT NULL
);

CREATE TABLE decisions (
    id           TEXT COLLATE "C" PRIMARY KEY,
    system       TEXT COLLATE "C" NOT NULL,
    content_hash TEXT COLLATE "C" NOT NULL,
    client       TEXT COLLATE "C" NOT NULL,
    provider     TEXT COLLATE "C" NOT NULL,
    canonical    TEXT COLLATE "C" NOT NULL,
    received_at  TEXT COLLATE "C" NOT NULL,
    version      BIGINT NOT NULL DEFAULT 0
);

-- Every version of a decision as it arrived (version 0: the decision as first sent).
CREATE TABLE decision_versions (
    decision_id    TEXT COLLATE "C" NOT NULL REFERENCES decisions(id),
    version        BIGINT NOT NULL,
    effective_from TEXT COLLATE "C" NOT NULL,
    kind           TEXT COLLATE "C" NOT NULL,
    canonical      TEXT COLLATE "C" NOT NULL,
    system         TEXT COLLATE "C" NOT NULL,
    received_at    TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (decision_id, version)
);

CREATE TABLE orders (
    id                  TEXT COLLATE "C" PRIMARY KEY,
    decision_id         TEXT COLLATE "C" NOT NULL REFERENCES decisions(id),
    source_system       TEXT COLLATE "C" NOT NULL,
    provider            TEXT COLLATE "C" NOT NULL,
    provider_system     TEXT COLLATE "C" NOT NULL,
    client              TEXT COLLATE "C" NOT NULL,
    execute_by          TEXT COLLATE "C" NOT NULL,
    plan_due            TEXT COLLATE "C" NOT NULL,
    canonical           TEXT COLLATE "C" NOT NULL,
    created_at          TEXT COLLATE "C" NOT NULL,
    status              TEXT COLLATE "C" NOT NULL,
    delivered_at        TEXT COLLATE "C",
    ack_status          TEXT COLLATE "C",
    ack_reason          TEXT COLLATE "C",
    acked_at            TEXT COLLATE "C",
    plan_established_on TEXT COLLATE "C",
    plan_received_at    TEXT COLLATE "C",
    start_date          TEXT COLLATE "C",
    end_date            TEXT COLLATE "C",
    -- The order's pauses as a JSON array of [from, to] pairs (NULL: none).
    paused              TEXT COLLATE "C"
);
CREATE INDEX orders_provider ON orders(provider);
CREATE INDEX orders_unconfirmed ON orders(execute_by) WHERE acked_at IS NULL;
CREATE INDEX orders_without_plan ON orders(plan_due) WHERE plan_established_on IS NULL;
CREATE INDEX orders_client_provider ON orders(client, provider, start_date);
CREATE INDEX orders_decision ON orders(decision_id);

-- Everything the hub sends goes through here; a node claims rows with a lease.
CREATE TABLE outbox (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    system          TEXT COLLATE "C" NOT NULL,
    message_type    TEXT COLLATE "C" NOT NULL,
    order_id        TEXT COLLATE "C",
    idempotency_key TEXT COLLATE "C" NOT NULL UNIQUE,
    content_type    TEXT COLLATE "C" NOT NULL,
    endpoint        TEXT COLLATE "C",
    body            BYTEA NOT NULL,
    state           TEXT COLLATE "C" NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at TEXT COLLATE "C" NOT NULL,
    lease_owner     TEXT COLLATE "C",
    lease_until     TEXT COLLATE "C",
    last_error      TEXT COLLATE "C",
    created_at      TEXT COLLATE "C" NOT NULL,
    delivered_at    TEXT COLLATE "C",
    action          TEXT COLLATE "C",
    log_seq         BIGINT
);
CREATE INDEX outbox_due ON outbox(next_attempt_at, id) WHERE state = 'pending';
CREATE INDEX outbox_order ON outbox(order_id);
CREATE INDEX outbox_dead ON outbox(state) WHERE state = 'dead';

CREATE TABLE tag_registrations (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tag_uid      TEXT COLLATE "C" NOT NULL,
    client       TEXT COLLATE "C" NOT NULL,
    installed_on TEXT COLLATE "C" NOT NULL,
    removed_on   TEXT COLLATE "C",
    created_at   TEXT COLLATE "C" NOT NULL
);
CREATE INDEX tag_registrations_tag ON tag_registrations(tag_uid, installed_on);
CREATE INDEX tag_registrations_client ON tag_registrations(client);

-- Every visit received. Visits are inserted only by a commit that holds the chain's
-- sequencer, so their ids grow in commit order and the visit-report watermark (by id)
-- never passes a visit that commits later.
CREATE TABLE visits (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source_id       TEXT COLLATE "C" NOT NULL UNIQUE,
    system          TEXT COLLATE "C" NOT NULL,
    provider        TEXT COLLATE "C",
    client          TEXT COLLATE "C" NOT NULL,
    order_id        TEXT COLLATE "C",
    staff           TEXT COLLATE "C" NOT NULL,
    check_in        TEXT COLLATE "C" NOT NULL,
    check_out       TEXT COLLATE "C",
    month           TEXT COLLATE "C" NOT NULL,
    seconds         BIGINT,
    planned_minutes BIGINT,
    visit_outcome   TEXT COLLATE "C" NOT NULL,
    manual          BOOLEAN NOT NULL,
    outcome         TEXT COLLATE "C" NOT NULL,
    codes           TEXT COLLATE "C" NOT NULL,
    findings        TEXT COLLATE "C" NOT NULL,
    canonical       TEXT COLLATE "C" NOT NULL,
    log_seq         BIGINT NOT NULL,
    line            BIGINT,
    received_at     TEXT COLLATE "C" NOT NULL
);
CREATE INDEX visits_staff ON visits(staff, check_in);
CREATE INDEX visits_provider_month ON visits(provider, month);
CREATE INDEX visits_client_without_order ON visits(client) WHERE order_id IS NULL;

CREATE TABLE feed_cursors (
    system     TEXT COLLATE "C" PRIMARY KEY,
    cursor     TEXT COLLATE "C" NOT NULL,
    updated_at TEXT COLLATE "C" NOT NULL
);

CREATE TABLE closed_months (
    month     TEXT COLLATE "C" PRIMARY KEY,
    closed_at TEXT COLLATE "C" NOT NULL
);

CREATE TABLE progress (
    name    TEXT COLLATE "C" PRIMARY KEY,
    through BIGINT NOT NULL
);

CREATE TABLE invoices (
    provider    TEXT COLLATE "C" NOT NULL,
    kind        TEXT COLLATE "C" NOT NULL,
    id          TEXT COLLATE "C" NOT NULL,
    month       TEXT COLLATE "C" NOT NULL,
    canonical   TEXT COLLATE "C" NOT NULL,
    log_seq     BIGINT NOT NULL,
    received_at TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (provider, kind, id)
);
CREATE INDEX invoices_month ON invoices(provider, month);

CREATE TABLE verifications (
    seq         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    provider    TEXT COLLATE "C" NOT NULL,
    invoice_id  TEXT COLLATE "C" NOT NULL,
    month       TEXT COLLATE "C" NOT NULL,
    report      TEXT COLLATE "C" NOT NULL,
    log_seq     BIGINT NOT NULL,
    created_at  TEXT COLLATE "C" NOT NULL
);
CREATE INDEX verifications_invoice ON verifications(provider, invoice_id);
CREATE INDEX verifications_invoice_id ON verifications(invoice_id);

CREATE TABLE verified_lines (
    provider   TEXT COLLATE "C" NOT NULL,
    invoice_id TEXT COLLATE "C" NOT NULL,
    line_id    TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (provider, invoice_id, line_id)
);

-- INV005 across nodes: a verification's commit locks its provider's row (SELECT ... FOR
-- UPDATE) and expects the generation it read before reading the invoices.
CREATE TABLE invoice_generations (
    provider   TEXT COLLATE "C" PRIMARY KEY,
    generation BIGINT NOT NULL
);

CREATE TABLE provider_reports (
    id           TEXT COLLATE "C" PRIMARY KEY,
    message_type TEXT COLLATE "C" NOT NULL,
    kind         TEXT COLLATE "C" NOT NULL,
    severity     TEXT COLLATE "C",
    provider     TEXT COLLATE "C" NOT NULL,
    client       TEXT COLLATE "C" NOT NULL,
    order_id     TEXT COLLATE "C",
    day          TEXT COLLATE "C" NOT NULL,
    month        TEXT COLLATE "C" NOT NULL,
    system       TEXT COLLATE "C" NOT NULL,
    canonical    TEXT COLLATE "C" NOT NULL,
    received_at  TEXT COLLATE "C" NOT NULL
);
CREATE INDEX provider_reports_month ON provider_reports(month, provider);
CREATE INDEX provider_reports_order ON provider_reports(order_id) WHERE order_id IS NOT NULL;
