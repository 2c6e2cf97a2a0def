-- Auditing (SPEC §9): the access log, hash-chained like the message log, and the signed
-- checkpoints of the message log's Merkle tree.

-- Every read of personal data: who, in which role, when, what they asked (the endpoint and
-- its filters as canonical JSON) and which clients and log entries they were shown (JSON
-- arrays). `hash` chains the entries: see hub/core/src/log/access.rs for its recipe.
CREATE TABLE access_log (
    seq       INTEGER PRIMARY KEY,
    at        TEXT NOT NULL,
    subject   TEXT NOT NULL,
    role      TEXT NOT NULL,
    query     TEXT NOT NULL,
    clients   TEXT NOT NULL,
    entries   TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL
);
CREATE INDEX access_log_subject ON access_log (subject, seq);
CREATE INDEX access_log_at ON access_log (at);
-- "Who has looked at this client": one row per client an entry showed.
CREATE TABLE access_log_clients (
    client TEXT NOT NULL,
    seq    INTEGER NOT NULL REFERENCES access_log(seq),
    PRIMARY KEY (client, seq)
) WITHOUT ROWID;
CREATE TRIGGER access_log_no_update BEFORE UPDATE ON access_log
BEGIN SELECT RAISE(ABORT, 'the access log is append-only'); END;
CREATE TRIGGER access_log_no_delete BEFORE DELETE ON access_log
BEGIN SELECT RAISE(ABORT, 'the access log is append-only'); END;

-- The free-text record of reads it replaces stays, unchanged and no longer written.
CREATE TRIGGER log_reads_no_update BEFORE UPDATE ON log_reads
BEGIN SELECT RAISE(ABORT, 'the record of reads is append-only'); END;
CREATE TRIGGER log_reads_no_delete BEFORE DELETE ON log_reads
BEGIN SELECT RAISE(ABORT, 'the record of reads is append-only'); END;

-- Signed checkpoints of the message log's Merkle tree: its size, root (hex) and the signed
-- note (docs/audit-log.md). One per size: a tree of a given size has one root.
CREATE TABLE checkpoints (
    size INTEGER PRIMARY KEY,
    root TEXT NOT NULL,
    at   TEXT NOT NULL,
    note TEXT NOT NULL
);
