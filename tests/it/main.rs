//! Integration tests, in one binary so that the suite links once: black-box
//! tests over HTTP against real PostgreSQL (a fresh database per test), the
//! built-in simulator or a wiremock upstream, and the real binary as a child
//! process where crashes and configuration are concerned.

mod common;

mod audit_api;
mod batch_api;
mod batch_dry_run;
mod batch_keys;
mod callback_door;
mod callback_groups;
mod callbacks;
mod claims;
mod compose;
mod configuration;
mod console;
mod crash_safety;
mod deliveries_api;
mod erased_results;
mod erasure_api;
mod events;
mod facet_index;
mod facets_api;
mod front_door;
mod generate;
mod guarantees;
mod import_export;
mod kept_totals;
mod layers;
mod lifecycle;
mod lookups_api;
mod match_basis;
mod open_door;
mod operations;
mod pacing;
mod profile_refresh;
mod profile_versions;
mod profiles_api;
mod queue_tables;
mod read_replica;
mod replicas;
mod sandbox_loop;
mod segments;
mod upstream_failures;
mod webhook_disable;
mod webhooks;
