//! An event as `GET /v1/events` sends it: one Server-Sent Events frame
//! (`id:`, `event:`, `data:` and a blank line). The live feed renders each
//! event's frame once and every open stream sends the same bytes: with a
//! hundred streams, JSON and formatting cost one event's worth, not a
//! hundred.

use bytes::{BufMut, Bytes, BytesMut};
use serde_json::json;

use crate::store::events::EventRecord;

/// A comment line, sent when a stream has been quiet for a while: it
/// keeps idle connections (and the proxies between) open.
pub const KEEP_ALIVE_COMMENT: &[u8] = b": keep-alive\n\n";

/// One event and its frame, as the live feed carries it to every stream.
#[derive(Debug)]
pub struct FeedEvent {
    pub id: i64,
    pub frame: Bytes,
}

impl FeedEvent {
    pub fn new(record: &EventRecord) -> Self {
        FeedEvent {
            id: record.id,
            frame: render(record),
        }
    }
}

/// The frame of `record`: its id, its type, and its data on one line
/// (JSON has no raw newlines, which SSE would split).
pub fn render(record: &EventRecord) -> Bytes {
    let mut frame = BytesMut::with_capacity(192);
    render_into(record, &mut frame);
    frame.freeze()
}

/// [`render`], appended to `out` (several frames sent in one write).
pub fn render_into(record: &EventRecord, out: &mut BytesMut) {
    let data = record.carried_data().unwrap_or_else(|| {
        json!({
            "lookup_id": record.lookup_id,
            "status": record.status(),
            "at": record.at,
            "profile_id": record.profile_id,
        })
    });
    out.put_slice(b"id: ");
    out.put_slice(record.id.to_string().as_bytes());
    out.put_slice(b"\nevent: ");
    out.put_slice(record.kind.as_bytes());
    out.put_slice(b"\ndata: ");
    // Writing into a BytesMut cannot fail; the value is plain JSON.
    serde_json::to_writer(out.writer(), &data).expect("JSON into memory");
    out.put_slice(b"\n\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn a_frame_is_one_sse_event_whose_data_is_one_line() {
        let record = EventRecord {
            id: 42,
            lookup_id: Some(uuid::Uuid::nil()),
            kind: "lookup.completed".into(),
            at: chrono::Utc.with_ymd_and_hms(2026, 12, 1, 10, 0, 0).unwrap(),
            profile_id: None,
            data: None,
        };
        let frame = String::from_utf8(render(&record).to_vec()).unwrap();
        let (head, rest) = frame.split_once("\ndata: ").unwrap();
        assert_eq!(head, "id: 42\nevent: lookup.completed");
        let data = rest.strip_suffix("\n\n").unwrap();
        assert!(!data.contains('\n'));
        let data: serde_json::Value = serde_json::from_str(data).unwrap();
        assert_eq!(data["status"], "completed");
        assert_eq!(data["lookup_id"], uuid::Uuid::nil().to_string());
        assert_eq!(data["at"], "2026-12-01T10:00:00Z");
    }
}
