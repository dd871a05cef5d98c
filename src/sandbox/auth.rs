//! The provider's authentication: `X-API-Key` and `X-API-Secret` on every
//! request, with a distinct 401 code for each missing or wrong header.

use axum::http::HeaderMap;
use subtle::ConstantTimeEq;

use super::SandboxConfig;
use super::envelope::ApiError;

/// Checks both headers; the key is checked before the secret.
pub fn check(config: &SandboxConfig, headers: &HeaderMap) -> Result<(), ApiError> {
    let key = header(headers, "x-api-key");
    let secret = header(headers, "x-api-secret");
    let Some(key) = key else {
        return Err(ApiError::unauthorized(
            "missing_api_key",
            "X-API-Key header is required",
        ));
    };
    let Some(secret) = secret else {
        return Err(ApiError::unauthorized(
            "missing_api_secret",
            "X-API-Secret header is required",
        ));
    };
    if !equal(key, &config.api_key) {
        return Err(ApiError::unauthorized("invalid_api_key", "Invalid API key"));
    }
    if !equal(secret, &config.api_secret) {
        return Err(ApiError::unauthorized(
            "invalid_api_secret",
            "Invalid API secret",
        ));
    }
    Ok(())
}

/// A header's bytes, None when absent or empty.
fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a [u8]> {
    headers
        .get(name)
        .map(|value| value.as_bytes())
        .filter(|value| !value.is_empty())
}

/// Constant-time comparison, so response timing does not leak the secret.
fn equal(given: &[u8], expected: &str) -> bool {
    given.len() == expected.len() && bool::from(given.ct_eq(expected.as_bytes()))
}
