//! Typed call messages — chat, links, document pushes, annotation strokes — that the gateway relays to everyone in
//! the room, in one order, after appending each to the call's event stream (`call-events/<room>` in the store) and
//! handing it to the call's recording as an event. A message that cannot be stored is refused, never relayed
//! unrecorded.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use vbank_store::Store;

use crate::recording::Calls;

/// Longest chat text, in characters.
pub const MAX_CHAT_CHARS: usize = 4000;
/// Most points in one whiteboard stroke.
pub const MAX_STROKE_POINTS: usize = 1000;
/// Messages one participant may send per second; more are refused (`rate_limited`).
pub const MAX_PER_SECOND: u32 = 30;
/// Messages buffered for a slow receiver before it is told it missed some.
const BACKLOG: usize = 256;

/// What a participant sends: `{"type":"message","body":{"kind":…,…}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Body {
    /// Chat text.
    Chat {
        /// 1..=4000 characters.
        text: String,
    },
    /// A link for the other side to open.
    Link {
        /// An `https://` URL, at most 2048 bytes.
        url: String,
        /// What the link is, at most 200 characters.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        title: Option<String>,
    },
    /// The teller shows a page of a document uploaded for this call (`POST /api/documents`). The sender gives
    /// `id` and `page`; the gateway fills in the rest from the document store.
    Document {
        /// 1–64 of `A-Za-z0-9-_`.
        id: String,
        /// 1-based page.
        page: u32,
        /// Display name (the uploaded file's name).
        #[serde(default)]
        name: String,
        /// Pages in the document.
        #[serde(default)]
        pages: u32,
        /// SM3 of the document as uploaded, hex.
        #[serde(default)]
        sm3: String,
    },
    /// One annotation stroke on the shown page (or the whiteboard), in coordinates relative to it (0..=1).
    Stroke {
        /// 1..=1000 points `[x, y]`.
        points: Vec<[f32; 2]>,
        /// `#rrggbb`.
        color: String,
        /// Line width in CSS pixels, 0.5..=50.
        width: f32,
        /// Pen (default), highlighter (translucent) or eraser (removes ink under it).
        #[serde(default)]
        tool: Tool,
    },
    /// Clear the whiteboard.
    Clear,
}

/// What a stroke draws with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tool {
    /// Opaque ink.
    #[default]
    Pen,
    /// Translucent ink.
    Highlighter,
    /// Removes ink under it.
    Eraser,
}

impl Body {
    /// Check the fields; the error names what to fix.
    pub fn validate(&self) -> Result<(), String> {
        let ok = |cond: bool, why: &str| if cond { Ok(()) } else { Err(why.to_string()) };
        match self {
            Body::Chat { text } => {
                ok(!text.trim().is_empty() && text.chars().count() <= MAX_CHAT_CHARS, "chat text: 1-4000 characters")
            }
            Body::Link { url, title } => {
                ok(
                    url.starts_with("https://") && url.len() <= 2048 && !url.chars().any(char::is_whitespace),
                    "link url: an https:// URL without spaces, at most 2048 bytes",
                )?;
                ok(title.as_ref().is_none_or(|t| t.chars().count() <= 200), "link title: at most 200 characters")
            }
            Body::Document { id, page, .. } => {
                ok(
                    !id.is_empty()
                        && id.len() <= 64
                        && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
                    "document id: 1-64 letters, digits, - or _",
                )?;
                ok(*page >= 1, "document page: 1 or more")
            }
            Body::Stroke { points, color, width, .. } => {
                ok(!points.is_empty() && points.len() <= MAX_STROKE_POINTS, "stroke: 1-1000 points")?;
                ok(
                    points.iter().flatten().all(|v| v.is_finite() && (0.0..=1.0).contains(v)),
                    "stroke points: [x, y] with each between 0 and 1",
                )?;
                ok(
                    color.len() == 7 && color.starts_with('#') && color[1..].chars().all(|c| c.is_ascii_hexdigit()),
                    "stroke color: #rrggbb",
                )?;
                ok(width.is_finite() && (0.5..=50.0).contains(width), "stroke width: 0.5-50")
            }
            Body::Clear => Ok(()),
        }
    }
}

/// What everyone in the room receives (the sender too, as its acknowledgement and place in the order).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Delivered {
    /// Always `"message"`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Position in the call's event stream (omitted in the stored record, where the stream position says it).
    #[serde(default, skip_serializing_if = "is_unset")]
    pub seq: u64,
    /// The sender's participant id.
    pub from: u64,
    /// The sender's role.
    pub role: String,
    /// When the gateway accepted it (RFC 3339, UTC).
    pub at: String,
    /// The message.
    pub body: Body,
}

impl Delivered {
    /// The message as a recording event: the body's fields with who sent it and its place in the call's stream.
    pub fn as_event(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(&self.body).unwrap_or_default();
        if let Some(o) = v.as_object_mut() {
            o.insert("seq".into(), self.seq.into());
            o.insert("from".into(), self.from.into());
            o.insert("role".into(), self.role.clone().into());
        }
        v
    }
}

fn is_unset(seq: &u64) -> bool {
    *seq == 0
}

/// Why a message was not relayed.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum Refused {
    /// A field is wrong; the text names it.
    #[error("{0}")]
    Invalid(String),
    /// The call's event stream could not take it, so it was not relayed.
    #[error("the message could not be recorded, so it was not sent: {0}")]
    NotRecorded(String),
}

struct Room {
    tx: broadcast::Sender<Arc<str>>,
    /// Held across append-and-send so the relay order is the stream order; counts messages when there is no store.
    order: tokio::sync::Mutex<u64>,
}

/// The rooms' message buses.
#[derive(Clone, Default)]
pub struct Rooms {
    rooms: Arc<Mutex<HashMap<String, Arc<Room>>>>,
}

impl Rooms {
    /// Receive the room's messages from now on.
    pub fn subscribe(&self, room: &str) -> broadcast::Receiver<Arc<str>> {
        let mut rooms = self.rooms.lock().unwrap_or_else(|p| p.into_inner());
        let r = rooms
            .entry(room.to_string())
            .or_insert_with(|| Arc::new(Room { tx: broadcast::channel(BACKLOG).0, order: tokio::sync::Mutex::new(0) }));
        r.tx.subscribe()
    }

    /// Forget a room nobody listens to any more.
    pub fn release(&self, room: &str) {
        let mut rooms = self.rooms.lock().unwrap_or_else(|p| p.into_inner());
        if rooms.get(room).is_some_and(|r| r.tx.receiver_count() == 0) {
            rooms.remove(room);
        }
    }

    /// Validate, record (the store's event stream, then the call's recording) and relay a message from
    /// participant `from` (`role`) in `room`.
    pub async fn send(
        &self,
        store: Option<&Arc<dyn Store>>,
        calls: &Calls,
        room: &str,
        from: u64,
        role: &str,
        body: Body,
    ) -> Result<u64, Refused> {
        body.validate().map_err(Refused::Invalid)?;
        let r = self.rooms.lock().unwrap_or_else(|p| p.into_inner()).get(room).cloned();
        let Some(r) = r else { return Err(Refused::Invalid("join the room first".into())) };
        let mut count = r.order.lock().await;
        let mut d =
            Delivered { kind: "message".into(), seq: 0, from, role: role.into(), at: vbank_log::rfc3339_now(), body };
        let json = |d: &Delivered| serde_json::to_string(d).map_err(|e| Refused::Invalid(e.to_string()));
        d.seq = match store {
            Some(store) => {
                let stream = format!("call-events/{room}");
                store.append(&stream, json(&d)?.as_bytes()).await.map_err(|e| Refused::NotRecorded(e.to_string()))?
            }
            None => *count + 1,
        };
        *count += 1;
        calls.record(room, d.as_event()).await;
        let _ = r.tx.send(json(&d)?.into());
        Ok(d.seq)
    }
}

/// A per-connection limit of [`MAX_PER_SECOND`] messages per second.
#[derive(Debug)]
pub struct RateLimit {
    window: Instant,
    count: u32,
}

impl RateLimit {
    /// A fresh limit.
    pub fn new(now: Instant) -> Self {
        RateLimit { window: now, count: 0 }
    }

    /// Whether one more message may go at `now`.
    pub fn allow(&mut self, now: Instant) -> bool {
        if now.duration_since(self.window) >= Duration::from_secs(1) {
            self.window = now;
            self.count = 0;
        }
        self.count += 1;
        self.count <= MAX_PER_SECOND
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(json: &str) -> Result<Body, String> {
        let b: Body = serde_json::from_str(json).map_err(|e| e.to_string())?;
        b.validate().map(|_| b)
    }

    #[test]
    fn each_kind_is_checked_field_by_field() {
        assert!(body(r#"{"kind":"chat","text":"您好"}"#).is_ok());
        assert!(body(r#"{"kind":"chat","text":"  "}"#).unwrap_err().contains("1-4000"));
        assert!(body(&format!(r#"{{"kind":"chat","text":"{}"}}"#, "字".repeat(4001))).is_err());
        assert!(body(r#"{"kind":"link","url":"https://bank.example/form","title":"表单"}"#).is_ok());
        assert!(body(r#"{"kind":"link","url":"javascript:alert(1)"}"#).unwrap_err().contains("https://"));
        assert!(body(r#"{"kind":"document","id":"contract-7","page":2}"#).is_ok());
        assert!(body(r#"{"kind":"document","id":"../etc","name":"x","page":1}"#).unwrap_err().contains("document id"));
        assert!(body(r##"{"kind":"stroke","points":[[0.1,0.2],[0.3,0.4]],"color":"#ff0000","width":2}"##).is_ok());
        assert!(
            body(r##"{"kind":"stroke","points":[[0.1,0.2]],"color":"#ffee00","width":20,"tool":"highlighter"}"##)
                .is_ok()
        );
        assert!(
            body(r##"{"kind":"stroke","points":[[0.1,0.2]],"color":"#ffee00","width":20,"tool":"brush"}"##).is_err()
        );
        assert!(body(r##"{"kind":"stroke","points":[[1.5,0.2]],"color":"#ff0000","width":2}"##).is_err());
        assert!(
            body(r#"{"kind":"stroke","points":[[0.5,0.2]],"color":"red","width":2}"#).unwrap_err().contains("#rrggbb")
        );
        assert!(body(r#"{"kind":"clear"}"#).is_ok());
        assert!(body(r#"{"kind":"chat","text":"x","extra":1}"#).is_err(), "unknown fields are refused");
        assert!(body(r#"{"kind":"video","text":"x"}"#).is_err());
    }

    #[tokio::test]
    async fn messages_reach_everyone_in_order_and_other_rooms_not_at_all() {
        let rooms = Rooms::default();
        let calls = Calls::unrecorded();
        let mut a = rooms.subscribe("r1");
        let mut b = rooms.subscribe("r1");
        let mut other = rooms.subscribe("r2");
        for i in 0..3 {
            let seq = rooms.send(None, &calls, "r1", 7, "teller", Body::Chat { text: format!("m{i}") }).await.unwrap();
            assert_eq!(seq, i + 1);
        }
        for rx in [&mut a, &mut b] {
            for i in 0..3u64 {
                let d: Delivered = serde_json::from_str(&rx.recv().await.unwrap()).unwrap();
                assert_eq!((d.seq, d.from, d.role.as_str()), (i + 1, 7, "teller"));
                assert_eq!(d.body, Body::Chat { text: format!("m{i}") });
            }
        }
        assert!(other.try_recv().is_err());
        let bad = rooms.send(None, &calls, "r1", 7, "teller", Body::Chat { text: String::new() }).await;
        assert!(matches!(bad, Err(Refused::Invalid(_))));
        assert!(rooms.send(None, &calls, "nowhere", 7, "teller", Body::Clear).await.is_err());
    }

    #[test]
    fn the_rate_limit_opens_again_after_a_second() {
        let t0 = Instant::now();
        let mut l = RateLimit::new(t0);
        assert!((0..MAX_PER_SECOND).all(|_| l.allow(t0)));
        assert!(!l.allow(t0 + Duration::from_millis(500)));
        assert!(l.allow(t0 + Duration::from_millis(1001)));
    }
}
