//! Keyset cursors over `bigserial` ids of newest-first lists (deliveries,
//! webhook attempts): the id of the last item, opaque to clients.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

pub fn encode(id: i64) -> String {
    URL_SAFE_NO_PAD.encode(format!("id|{id}"))
}

pub fn decode(raw: &str) -> Option<i64> {
    let text = String::from_utf8(URL_SAFE_NO_PAD.decode(raw).ok()?).ok()?;
    text.strip_prefix("id|")?.parse().ok().filter(|id| *id > 0)
}

/// Turns `limit + 1` rows fetched newest first into a page and the cursor of
/// the next one.
pub fn page<T>(mut rows: Vec<T>, limit: i64, id: impl Fn(&T) -> i64) -> (Vec<T>, Option<String>) {
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next = if more {
        rows.last().map(|r| encode(id(r)))
    } else {
        None
    };
    (rows, next)
}

#[cfg(test)]
mod tests {
    #[test]
    fn id_cursors_round_trip_and_reject_garbage() {
        assert_eq!(super::decode(&super::encode(42)), Some(42));
        assert_eq!(super::decode("garbage"), None);
        assert_eq!(super::decode(&super::encode(-1)), None);
    }
}
