-- carehub schema on PostgreSQL, version 2: what SQLite's migrations 10 and 11 built.
--
-- Auditing (SPEC §9): the access log, hash-chained like the message log; the signed
-- checkpoints of the message log's Merkle tree; and retention, which may empty an old
-- entry's payload while its hash, the chain and the tree still verify.

-- Every read of personal data: who, in which role, when, what they asked (the endpoint and
-- its filters as canonical JSON) and which clients and log entries they were shown (JSON
-- arrays). `hash` chains the entries: see hub/core/src/log/access.rs for its recipe.
CREATE TABLE access_log (
    seq       BIGINT PRIMARY KEY,
    at        TEXT COLLATE "C" NOT NULL,
    subject   TEXT COLLATE "C" NOT NULL,
    role      TEXT COLLATE "C" NOT NULL,
    query     TEXT COLLATE "C" NOT NULL,
    clients   TEXT COLLATE "C" NOT NULL,
    entries   TEXT COLLATE "C" NOT NULL,
    prev_hash TEXT COLLATE "C" NOT NULL,
    hash      TEXT COLLATE "C" NOT NULL
);
CREATE INDEX access_log_subject ON access_log (subject, seq);
CREATE INDEX access_log_at ON access_log (at);
-- "Who has looked at this client": one row per client an entry showed.
CREATE TABLE access_log_clients (
    client TEXT COLLATE "C" NOT NULL,
    seq    BIGINT NOT NULL REFERENCES access_log(seq),
    PRIMARY KEY (client, seq)
);

-- The access log's sequencer, as `chain_head` is the message log's: one row, locked FOR
-- UPDATE by every commit that records a read, so the reads of every node form one chain.
-- A commit that also appends to the message log takes `chain_head` first.
CREATE TABLE access_head (
    id   SMALLINT PRIMARY KEY CHECK (id = 1),
    seq  BIGINT NOT NULL,
    hash TEXT COLLATE "C" NOT NULL
);
INSERT INTO access_head (id, seq, hash)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');

CREATE FUNCTION access_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the access log is append-only';
END
$$;
CREATE TRIGGER access_log_no_update BEFORE UPDATE OR DELETE ON access_log
    FOR EACH ROW EXECUTE FUNCTION access_log_append_only();
CREATE TRIGGER access_log_no_truncate BEFORE TRUNCATE ON access_log
    FOR EACH STATEMENT EXECUTE FUNCTION access_log_append_only();

-- The free-text record of reads it replaces stays, unchanged and no longer written.
CREATE FUNCTION log_reads_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the record of reads is append-only';
END
$$;
CREATE TRIGGER log_reads_no_update BEFORE UPDATE OR DELETE ON log_reads
    FOR EACH ROW EXECUTE FUNCTION log_reads_append_only();
CREATE TRIGGER log_reads_no_truncate BEFORE TRUNCATE ON log_reads
    FOR EACH STATEMENT EXECUTE FUNCTION log_reads_append_only();

-- Signed checkpoints of the message log's Merkle tree: its size, root (hex) and the signed
-- note (docs/audit-log.md). One per size: a tree of a given size has one root.
CREATE TABLE checkpoints (
    size BIGINT PRIMARY KEY,
    root TEXT COLLATE "C" NOT NULL,
    at   TEXT COLLATE "C" NOT NULL,
    note TEXT COLLATE "C" NOT NULL
);

-- Retention: entries appended from this version on are hashed over their payload's
-- SHA-256 (`payload_sha256`) rather than the payload itself (docs/audit-log.md §1), so the
-- payload can go and the hash stay. Older entries (payload_sha256 NULL) keep their payload.
ALTER TABLE message_log ADD COLUMN payload_sha256 TEXT COLLATE "C";
-- The retention entry (message_type 'retention') that removed the payload.
ALTER TABLE message_log ADD COLUMN retained_by BIGINT;

-- The log stays append-only but for one change: a retention entry already in the log
-- empties the payload of an earlier entry that has its hash, once, and changes nothing else.
CREATE FUNCTION message_log_retention_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.payload_sha256 IS NOT NULL AND OLD.retained_by IS NULL AND NEW.payload = ''::bytea
        AND NEW.retained_by > OLD.seq
        AND EXISTS (SELECT 1 FROM message_log r WHERE r.seq = NEW.retained_by AND r.message_type = 'retention')
        AND (NEW.seq, NEW.at, NEW.system, NEW.vendor, NEW.direction, NEW.message_type, NEW.content_type,
             NEW.canonical, NEW.status, NEW.error_code, NEW.error_message, NEW.decision_id, NEW.order_id,
             NEW.client, NEW.provider, NEW.delivery_key, NEW.prev_hash, NEW.hash, NEW.payload_sha256)
            IS NOT DISTINCT FROM
            (OLD.seq, OLD.at, OLD.system, OLD.vendor, OLD.direction, OLD.message_type, OLD.content_type,
             OLD.canonical, OLD.status, OLD.error_code, OLD.error_message, OLD.decision_id, OLD.order_id,
             OLD.client, OLD.provider, OLD.delivery_key, OLD.prev_hash, OLD.hash, OLD.payload_sha256)
    THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'the message log is append-only';
END
$$;
DROP TRIGGER message_log_no_update ON message_log;
CREATE TRIGGER message_log_no_update BEFORE UPDATE ON message_log
    FOR EACH ROW EXECUTE FUNCTION message_log_retention_only();
CREATE TRIGGER message_log_no_delete BEFORE DELETE ON message_log
    FOR EACH ROW EXECUTE FUNCTION message_log_append_only();
-- Retention's scan: the entries before an instant whose payload may go.
CREATE INDEX message_log_retainable ON message_log(at) WHERE payload_sha256 IS NOT NULL AND retained_by IS NULL;
