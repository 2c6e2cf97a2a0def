//! Delivery: how messages leave the hub and how files and feed pages come in.
//!
//! [`outbox`] is the one delivery loop for all outbound traffic: every message the hub sends
//! is an outbox row written in the same commit as its cause, leased, sent through its
//! system's transport, retried with backoff or dead-lettered. [`poller`] holds the pollers
//! that bring in what systems leave for the hub rather than send: the files in their SFTP
//! inboxes, handed to the flows and only then moved. [`lease`] makes each poller (and the
//! visit forwarder and the checkpointer) run on one node at a time when several hub nodes
//! share a database, taken over when its node dies; it says why by lease rows, and why
//! the outbox's own leases need no heartbeat.

pub mod lease;
pub mod outbox;
pub mod poller;
