-- Retention (SPEC §9): old payloads may be removed while the chain, the Merkle tree and
-- every proof still verify. Entries appended from this version on are hashed over their
-- payload's SHA-256 (`payload_sha256`) rather than the payload itself (docs/audit-log.md
-- §1), so the payload can go and the hash stay. Older entries (payload_sha256 NULL) are
-- hashed over their payload and keep it.
ALTER TABLE message_log ADD COLUMN payload_sha256 TEXT;
-- The retention entry (message_type 'retention') that removed the payload.
ALTER TABLE message_log ADD COLUMN retained_by INTEGER;

-- The log stays append-only but for one change: a retention entry already in the log
-- empties the payload of an earlier entry that has its hash, once, and changes nothing else.
DROP TRIGGER message_log_no_update;
CREATE TRIGGER message_log_no_update BEFORE UPDATE ON message_log
WHEN NOT (
    OLD.payload_sha256 IS NOT NULL AND OLD.retained_by IS NULL AND NEW.payload = x''
    AND NEW.retained_by > OLD.seq
    AND EXISTS (SELECT 1 FROM message_log r WHERE r.seq = NEW.retained_by AND r.message_type = 'retention')
    AND NEW.seq IS OLD.seq AND NEW.at IS OLD.at AND NEW.system IS OLD.system AND NEW.vendor IS OLD.vendor
    AND NEW.direction IS OLD.direction AND NEW.message_type IS OLD.message_type
    AND NEW.content_type IS OLD.content_type AND NEW.canonical IS OLD.canonical AND NEW.status IS OLD.status
    AND NEW.error_code IS OLD.error_code AND NEW.error_message IS OLD.error_message
    AND NEW.decision_id IS OLD.decision_id AND NEW.order_id IS OLD.order_id AND NEW.client IS OLD.client
    AND NEW.provider IS OLD.provider AND NEW.delivery_key IS OLD.delivery_key
    AND NEW.prev_hash IS OLD.prev_hash AND NEW.hash IS OLD.hash AND NEW.payload_sha256 IS OLD.payload_sha256
)
BEGIN SELECT RAISE(ABORT, 'the message log is append-only'); END;
