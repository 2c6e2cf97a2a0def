-- Version 6: an invoice is identified by its provider and its id, and two providers may use
-- the same id. Asking for an invoice by id alone finds every provider that used it (to answer
-- AMBIGUOUS_INVOICE with their list) without reading every verification.
CREATE INDEX verifications_invoice_id ON verifications(invoice_id);
