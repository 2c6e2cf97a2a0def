-- Version 2: an outbox row may carry an action for its transport (SOAP 1.1's SOAPAction).
ALTER TABLE outbox ADD COLUMN action TEXT;
