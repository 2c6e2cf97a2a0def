-- Version 5: invoices and their verification reports.

-- Every invoice and credit note taken, once per (provider, kind, id): the first copy stands.
CREATE TABLE invoices (
    provider    TEXT NOT NULL,
    kind        TEXT NOT NULL,              -- invoice | credit_note
    id          TEXT NOT NULL,
    month       TEXT NOT NULL,              -- the period invoiced, YYYY-MM
    canonical   TEXT NOT NULL,              -- lines as verification reads them
    log_seq     INTEGER NOT NULL,
    received_at TEXT NOT NULL,
    PRIMARY KEY (provider, kind, id)
);
CREATE INDEX invoices_month ON invoices(provider, month);

-- Every verification made, newest last; an invoice verified again gets a new row.
CREATE TABLE verifications (
    seq         INTEGER PRIMARY KEY,
    provider    TEXT NOT NULL,
    invoice_id  TEXT NOT NULL,
    month       TEXT NOT NULL,
    report      TEXT NOT NULL,
    log_seq     INTEGER NOT NULL,
    created_at  TEXT NOT NULL
);
CREATE INDEX verifications_invoice ON verifications(provider, invoice_id);

-- Invoice lines verified (INV005: a line verified again is approved 0).
CREATE TABLE verified_lines (
    provider   TEXT NOT NULL,
    invoice_id TEXT NOT NULL,
    line_id    TEXT NOT NULL,
    PRIMARY KEY (provider, invoice_id, line_id)
);
