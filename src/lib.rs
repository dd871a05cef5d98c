//! interests-receiver: submits person lookups to the upstream Personal
//! Interests API, receives their results by callback or by polling, stores
//! them in PostgreSQL and serves them over a REST API.

pub mod app;
pub mod audit;
pub mod auth;
pub mod batch;
pub mod callbacks;
pub mod cli;
pub mod client;
pub mod config;
pub mod crashpoint;
pub mod dry_run;
pub mod erasure;
pub mod events;
pub mod facet_index;
pub mod facets;
pub mod fields;
pub mod generate;
pub mod http;
pub mod lifecycle;
pub mod lookups;
pub mod reads;
pub mod refresh;
pub mod sandbox;
pub mod secrets;
pub mod store;
pub mod subject;
pub mod telemetry;
pub mod token;
pub mod upstream;
pub mod versions;
pub mod views;
pub mod webhooks;
pub mod workers;
