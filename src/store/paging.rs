//! Keyset paging of newest-first lists, one way for every list: a page is
//! `limit + 1` rows fetched after a [`Position`], cut by [`paginate`]. A
//! position is opaque to clients (base64url), so a list can change its key
//! without breaking them. Lists keyed by `(created_at, id)` (lookups,
//! profiles) use [`Cursor`]; lists keyed by a `bigserial` id (deliveries,
//! webhook attempts, the audit log) use [`IdCursor`].

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use uuid::Uuid;

/// Where the next page of a list starts, as clients pass it back.
pub trait Position: Sized {
    fn encode(&self) -> String;
    /// `None` for anything this service did not hand out.
    fn decode(raw: &str) -> Option<Self>;
}

/// `(created_at, id)` of the last item of a newest-first list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub created_at: DateTime<Utc>,
    pub id: Uuid,
}

impl Position for Cursor {
    fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!(
            "{}|{}",
            self.created_at.timestamp_micros(),
            self.id
        ))
    }

    fn decode(raw: &str) -> Option<Cursor> {
        let bytes = URL_SAFE_NO_PAD.decode(raw).ok()?;
        let text = String::from_utf8(bytes).ok()?;
        let (micros, id) = text.split_once('|')?;
        let created_at = DateTime::from_timestamp_micros(micros.parse().ok()?)?;
        // Only times PostgreSQL can compare (and this service can have made).
        if !(1970..=9999).contains(&chrono::Datelike::year(&created_at)) {
            return None;
        }
        Some(Cursor {
            created_at,
            id: id.parse().ok()?,
        })
    }
}

/// The `bigserial` id of the last item of a newest-first list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdCursor(pub i64);

impl Position for IdCursor {
    fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!("id|{}", self.0))
    }

    fn decode(raw: &str) -> Option<IdCursor> {
        let text = String::from_utf8(URL_SAFE_NO_PAD.decode(raw).ok()?).ok()?;
        text.strip_prefix("id|")?
            .parse()
            .ok()
            .filter(|id| *id > 0)
            .map(IdCursor)
    }
}

/// One page of a newest-first list.
pub struct Page<T, P = Cursor> {
    pub items: Vec<T>,
    pub next: Option<P>,
}

/// Turns `limit + 1` fetched rows into a page and the position of the next.
pub fn paginate<T, P>(mut rows: Vec<T>, limit: i64, position: impl Fn(&T) -> P) -> Page<T, P> {
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next = if more {
        rows.last().map(position)
    } else {
        None
    };
    Page { items: rows, next }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let c = Cursor {
            created_at: DateTime::from_timestamp_micros(1_767_000_000_123_456).unwrap(),
            id: Uuid::now_v7(),
        };
        assert_eq!(Cursor::decode(&c.encode()), Some(c));
        assert_eq!(Cursor::decode("not a cursor"), None);
        let far = URL_SAFE_NO_PAD.encode(format!("{}|{}", i64::MAX / 2, Uuid::now_v7()));
        assert_eq!(Cursor::decode(&far), None);
    }

    #[test]
    fn id_cursors_round_trip_and_reject_garbage() {
        assert_eq!(IdCursor::decode(&IdCursor(42).encode()), Some(IdCursor(42)));
        assert_eq!(IdCursor::decode("garbage"), None);
        assert_eq!(IdCursor::decode(&IdCursor(-1).encode()), None);
    }

    #[test]
    fn a_page_is_cut_at_the_limit_with_the_next_position() {
        let page = paginate(vec![5, 4, 3], 2, |n| IdCursor(*n));
        assert_eq!(page.items, [5, 4]);
        assert_eq!(page.next, Some(IdCursor(4)));
        let last = paginate(vec![2, 1], 2, |n| IdCursor(*n));
        assert_eq!(last.next, None);
    }
}
