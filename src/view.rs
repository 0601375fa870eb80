//! Small things every page uses: one-time flash messages, times and sizes for people.

use tower_sessions::Session;

/// A one-time message shown on the next page after an action.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Flash {
    pub error: bool,
    pub text: String,
}

impl Flash {
    const KEY: &'static str = "flash";

    pub fn ok(text: impl Into<String>) -> Flash {
        Flash {
            error: false,
            text: text.into(),
        }
    }

    pub fn error(text: impl Into<String>) -> Flash {
        Flash {
            error: true,
            text: text.into(),
        }
    }

    /// Keeps the message for the next page this session loads.
    pub async fn set(self, session: &Session) {
        if let Err(e) = session.insert(Self::KEY, self).await {
            tracing::warn!(error = %e, "could not store a flash message");
        }
    }

    /// The pending message, removed as it is read.
    pub async fn take(session: &Session) -> Option<Flash> {
        session.remove(Self::KEY).await.ok().flatten()
    }
}

/// A stored timestamp for people: "2026-11-25 10:53 UTC" (empty for 0).
pub fn format_time(unix: i64) -> String {
    if unix <= 0 {
        return String::new();
    }
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute] UTC");
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_default()
}

/// A stored timestamp to the second, for freshness: "2026-11-25 10:53:20 UTC" (empty for 0).
pub fn format_clock(unix: i64) -> String {
    if unix <= 0 {
        return String::new();
    }
    let format =
        time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC");
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_default()
}

/// A stored timestamp for programs (RFC 3339, "2026-11-25T10:53:20Z"); `None` stays null.
pub fn serialize_rfc3339<S: serde::Serializer>(
    unix: &Option<i64>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let text = unix
        .and_then(|u| time::OffsetDateTime::from_unix_timestamp(u).ok())
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        });
    serde::Serialize::serialize(&text, serializer)
}

/// Byte counts for people: "532 B", "14.2 KB", "3.1 MB".
pub fn human_bytes(bytes: i64) -> String {
    const UNITS: [&str; 4] = ["KB", "MB", "GB", "TB"];
    if bytes < 1000 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64;
    let mut unit = "B";
    for u in UNITS {
        if value < 1000.0 {
            break;
        }
        value /= 1000.0;
        unit = u;
    }
    format!("{value:.1} {unit}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_naturally() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(14_200), "14.2 KB");
        assert_eq!(human_bytes(3_100_000), "3.1 MB");
    }

    #[test]
    fn times_are_utc_minutes() {
        assert_eq!(format_time(0), "");
        assert_eq!(format_time(1_764_068_000), "2025-11-25 10:53 UTC");
        assert_eq!(format_clock(1_764_068_000), "2025-11-25 10:53:20 UTC");
    }
}
