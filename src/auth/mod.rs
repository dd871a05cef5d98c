//! Who may call the REST API: bearer tokens and the caller they identify,
//! and console sessions signed for a caller ([`session`]). The HTTP layer
//! checks them (`http::auth`, `http::session`); the domain records every
//! audited action under the [`Caller`].

pub mod session;
mod tokens;

pub use tokens::{Access, ApiTokens, Caller, TokenError};
