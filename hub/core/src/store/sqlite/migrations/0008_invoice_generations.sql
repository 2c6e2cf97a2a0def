-- INV005 without an in-process lock. A provider's invoice generation is a counter the store
-- bumps, inside the commit's transaction, whenever it stores an invoice or credit note or
-- records a verification for the provider (no row: generation 0). A verification reads it
-- before it reads anything else and its commit expects it unchanged
-- (`Op::ExpectInvoiceGeneration`): when another commit moved it meanwhile, the
-- verification's commit fails with nothing written and the flow verifies again.
CREATE TABLE invoice_generations (
    provider   TEXT PRIMARY KEY,
    generation INTEGER NOT NULL
) WITHOUT ROWID;
