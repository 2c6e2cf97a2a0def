-- Version 7: the message log finds everything about a client or an order.
--
-- An entry names one client and one order in its own columns. Some concern several (an
-- invoice and its verification report: one order and one client per line), and a delivery
-- attempt concerns what the message it delivers concerns. log_links holds an entry's further
-- (client, order) pairs, so `client =` and `order_id =` searches find it by any of them.
-- The links are an index over the log, not part of an entry: they are derived from its
-- content and the orders, and are not in its hash.
CREATE TABLE log_links (
    seq      INTEGER NOT NULL,   -- the message_log entry
    client   TEXT,
    order_id TEXT
);
CREATE INDEX log_links_seq ON log_links(seq);
CREATE INDEX log_links_client ON log_links(client) WHERE client IS NOT NULL;
CREATE INDEX log_links_order ON log_links(order_id) WHERE order_id IS NOT NULL;

-- The log entry that queued an outbox row ("queued"), so every attempt and replay of the
-- row is logged with what that entry concerns.
ALTER TABLE outbox ADD COLUMN log_seq INTEGER;
UPDATE outbox SET log_seq = q.seq
FROM (SELECT delivery_key, MAX(seq) AS seq FROM message_log
      WHERE direction = 'out' AND status = 'queued' AND delivery_key IS NOT NULL
      GROUP BY delivery_key) AS q
WHERE q.delivery_key = outbox.idempotency_key;

-- Entries logged before: an entry that names an order but not its client links to it...
INSERT INTO log_links (seq, client, order_id)
SELECT m.seq, o.client, o.id FROM message_log m JOIN orders o ON o.id = m.order_id
WHERE m.client IS NULL AND m.order_id IS NOT NULL;
-- ...an invoice or credit note taken, and a verification report sent, to every line's order
-- and its client...
INSERT INTO log_links (seq, client, order_id)
SELECT DISTINCT m.seq, o.client, json_extract(l.value, '$.order_id')
FROM message_log m, json_each(m.canonical, CASE WHEN m.direction = 'in' THEN '$.lines' ELSE '$.report.lines' END) l
LEFT JOIN orders o ON o.id = json_extract(l.value, '$.order_id')
WHERE m.message_type IN ('invoice', 'credit_note', 'verification') AND m.status IN ('accepted', 'queued')
  AND json_valid(m.canonical) AND json_extract(l.value, '$.order_id') IS NOT NULL;
-- ...and a delivery attempt or replay of a verification report to the report's.
INSERT INTO log_links (seq, client, order_id)
SELECT a.seq, l.client, l.order_id
FROM message_log a JOIN outbox ob ON ob.idempotency_key = a.delivery_key JOIN log_links l ON l.seq = ob.log_seq
WHERE a.direction = 'out' AND a.status <> 'queued' AND a.message_type = 'verification';
