//! The upstream Personal Interests API: payload types, HTTP client, and the
//! pacer every upstream call goes through.

pub mod client;
pub mod pacer;
pub mod payload;

pub use client::{PollOutcome, RateInfo, SubmitOutcome, UpstreamClient};
pub use pacer::Pacer;
