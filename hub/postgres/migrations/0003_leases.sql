-- carehub schema on PostgreSQL, version 3: what SQLite's migration 12 built.
--
-- Leases on work one node at a time does (SPEC §11): each SFTP inbox, each feed, the visit
-- forwarder and the checkpointer. A node holds a lease through `until` (the hub's clock,
-- in the fixed-width UTC text every time here is kept in) and renews it every heartbeat;
-- another node takes it over once `until` has passed, and at once when its holder gives it
-- up on a clean shutdown (the row goes). Rows, not advisory locks: see src/lib.rs.
CREATE TABLE leases (
    name  TEXT COLLATE "C" PRIMARY KEY,
    owner TEXT COLLATE "C" NOT NULL,
    until TEXT COLLATE "C" NOT NULL
);
