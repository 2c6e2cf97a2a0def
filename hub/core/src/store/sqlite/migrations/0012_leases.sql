-- Leases on work one node at a time does (SPEC §11): each SFTP inbox, each feed, the visit
-- forwarder and the checkpointer. A node holds a lease through `until` (the hub's clock,
-- the fixed-width UTC text every time here is kept in) and renews it every heartbeat;
-- another node takes it over once `until` has passed, and at once when its holder gives it
-- up on a clean shutdown (the row goes). See hub/core/src/delivery/lease.rs.
CREATE TABLE leases (
    name  TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    until TEXT NOT NULL
);
