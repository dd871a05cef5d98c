//! Console sessions, apart from HTTP: an API token's caller signed into a
//! cookie value (`payload.signature`, both base64url) with HMAC-SHA256
//! under the `ConsoleSession` key derived from `SERVICE_SECRET`, checked
//! again (signature under the current or previous secret, expiry, and the
//! token still configured), and the CSRF token that every write made with
//! it must carry. The token itself is never in the cookie. The cookie
//! header, the origin checks and the routes are `http::session`'s.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde::{Deserialize, Serialize};

use super::{Access, ApiTokens, Caller};
use crate::secrets::{Purpose, ServiceSecret};

/// How long a console session lasts.
pub const SESSION_SECS: i64 = 12 * 3600;

/// What the signed cookie holds.
#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    /// Token name.
    n: String,
    /// `r` (read) or `w` (read-write).
    a: char,
    /// Expiry, unix seconds.
    e: i64,
}

/// A valid session: who, until when, and the signed payload its CSRF
/// token is derived from.
#[derive(Debug)]
pub struct Session {
    pub caller: Caller,
    /// Unix seconds.
    pub expires_at: i64,
    payload: String,
}

impl Session {
    /// A new session for `caller`, and its cookie value.
    pub fn sign(secret: &ServiceSecret, caller: &Caller) -> (Session, String) {
        let claims = Claims {
            n: caller.name.clone(),
            a: if caller.access == Access::ReadWrite {
                'w'
            } else {
                'r'
            },
            e: chrono::Utc::now().timestamp() + SESSION_SECS,
        };
        let payload = B64.encode(serde_json::to_vec(&claims).expect("claims serialise"));
        let tag = secret.mac(Purpose::ConsoleSession, payload.as_bytes());
        let cookie = format!("{payload}.{}", B64.encode(tag));
        let session = Session {
            caller: caller.clone(),
            expires_at: claims.e,
            payload,
        };
        (session, cookie)
    }

    /// The session of a cookie value when its signature (current or
    /// previous secret) and expiry hold and its token is still configured:
    /// removing a token from `API_TOKENS` ends its sessions at the next
    /// request.
    pub fn verify(secret: &ServiceSecret, tokens: &ApiTokens, value: &str) -> Option<Session> {
        let (payload, signature) = value.split_once('.')?;
        let tag = B64.decode(signature).ok()?;
        if !secret.verify(Purpose::ConsoleSession, payload.as_bytes(), &tag) {
            return None;
        }
        let claims: Claims = serde_json::from_slice(&B64.decode(payload).ok()?).ok()?;
        if claims.e <= chrono::Utc::now().timestamp() {
            return None;
        }
        let access = match claims.a {
            'r' => Access::Read,
            'w' => Access::ReadWrite,
            _ => return None,
        };
        tokens.has_caller(&claims.n, access).then(|| Session {
            caller: Caller {
                name: claims.n,
                access,
            },
            expires_at: claims.e,
            payload: payload.to_owned(),
        })
    }

    /// The CSRF token of this session: a MAC of its cookie payload under a
    /// separate label, so it cannot be forged and changes with every session.
    pub fn csrf_token(&self, secret: &ServiceSecret) -> String {
        let tag = secret.mac(
            Purpose::ConsoleSession,
            format!("csrf:{}", self.payload).as_bytes(),
        );
        B64.encode(&tag[..16])
    }
}
