//! Who may call the REST API: bearer tokens and the caller they identify
//! ([`tokens`]). The HTTP layer checks them (`http::auth`) and signs the
//! console's session cookies with them (`http::session`); the domain
//! records every audited action under the [`Caller`].

mod tokens;

pub use tokens::{Access, ApiTokens, Caller, TokenError};
