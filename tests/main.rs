//! carehub's integration tests: the real HTTP API over loopback (or, where a test only
//! checks answers, its router called without a socket), vendors played by wiremock, a real
//! SQLite file, and the real binary where a test needs a process (crash recovery, `audit
//! verify`, `replay`). One module per capability; helpers in `support`.

mod support;

mod audit;
mod auth;
mod connections;
mod console;
mod contract;
mod crash;
mod db_copy;
mod decisions_api;
mod delivery;
mod failover;
mod flow;
mod followup;
mod invoice_basis;
mod invoices;
mod life;
mod life_matrix;
mod lifecare;
mod mappings;
mod matrix;
mod operations;
mod paraga;
mod procapita;
mod rejections;
mod tags;
mod tls;
mod treserva;
mod validate;
mod verify_month;
mod visit_paths;
mod visits;
mod visits_reported;
