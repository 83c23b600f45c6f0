//! What a ticket's history records: typed events, written to the JSON as
//! the same text as ever ("taken by giulia", "void: ticket.void_refused").
//! Text this version does not know (written by a later one) is kept as
//! it is.

use serde::{Deserialize, Serialize};

use super::{Action, Category};
use crate::reason::ReasonCode;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Created,
    /// Opened suspended: the quality check found something missing.
    CreatedSuspended,
    Taken {
        by: String,
    },
    Severity {
        level: String,
        resolution_hours: u64,
    },
    Classified(Category),
    /// Suspended with an information request to the requester.
    Suspended,
    Resumed,
    Closed,
    Reopened,
    /// What the requester's mail did (closed, reopened, resumed, refused).
    ByMail(Action),
    Void(ReasonCode),
    /// A void ticket came back: a retry of its mail was delivered.
    Revived(ReasonCode),
    Other(String),
}

impl std::fmt::Display for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Event::Created => f.write_str("created"),
            Event::CreatedSuspended => f.write_str("created suspended (quality check)"),
            Event::Taken { by } => write!(f, "taken by {by}"),
            Event::Severity {
                level,
                resolution_hours,
            } => write!(f, "severity {level} (resolve within {resolution_hours} h)"),
            Event::Classified(Category::Incident) => f.write_str("classified as incident"),
            Event::Classified(Category::Maintenance) => {
                f.write_str("classified as Manutenzione Ordinaria")
            }
            Event::Suspended => f.write_str("suspended with an information request"),
            Event::Resumed => f.write_str("resumed"),
            Event::Closed => f.write_str("closed"),
            Event::Reopened => f.write_str("reopened"),
            Event::ByMail(action) => write!(f, "{} by mail", action.as_str()),
            Event::Void(reason) => write!(f, "void: {reason}"),
            Event::Revived(reason) => write!(f, "revived: a retry was delivered ({reason})"),
            Event::Other(text) => f.write_str(text),
        }
    }
}

impl Event {
    /// The event a history text records; the inverse of `Display`.
    pub fn parse(text: &str) -> Event {
        let known = [
            Event::Created,
            Event::CreatedSuspended,
            Event::Classified(Category::Incident),
            Event::Classified(Category::Maintenance),
            Event::Suspended,
            Event::Resumed,
            Event::Closed,
            Event::Reopened,
        ];
        if let Some(e) = known.into_iter().find(|e| e.to_string() == text) {
            return e;
        }
        parse_with_value(text).unwrap_or_else(|| Event::Other(text.to_string()))
    }
}

fn parse_with_value(text: &str) -> Option<Event> {
    if let Some(by) = text.strip_prefix("taken by ") {
        return Some(Event::Taken { by: by.to_string() });
    }
    if let Some(rest) = text.strip_prefix("severity ") {
        let (level, hours) = rest.strip_suffix(" h)")?.split_once(" (resolve within ")?;
        return Some(Event::Severity {
            level: level.to_string(),
            resolution_hours: hours.parse().ok()?,
        });
    }
    if let Some(action) = text.strip_suffix(" by mail") {
        return action_named(action).map(Event::ByMail);
    }
    if let Some(code) = text.strip_prefix("void: ") {
        return reason_named(code).map(Event::Void);
    }
    let code = text
        .strip_prefix("revived: a retry was delivered (")?
        .strip_suffix(')')?;
    reason_named(code).map(Event::Revived)
}

fn action_named(name: &str) -> Option<Action> {
    [
        Action::Created,
        Action::Appended,
        Action::Closed,
        Action::Reopened,
        Action::Resumed,
        Action::Refused,
    ]
    .into_iter()
    .find(|a| a.as_str() == name)
}

fn reason_named(code: &str) -> Option<ReasonCode> {
    ReasonCode::ALL.iter().copied().find(|r| r.as_str() == code)
}

impl Serialize for Event {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Event {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Event, D::Error> {
        Ok(Event::parse(&String::deserialize(d)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_reads_back_from_its_text() {
        let events = [
            Event::Created,
            Event::CreatedSuspended,
            Event::Taken {
                by: "giulia rossi".into(),
            },
            Event::Severity {
                level: "P1".into(),
                resolution_hours: 4,
            },
            Event::Classified(Category::Incident),
            Event::Classified(Category::Maintenance),
            Event::Suspended,
            Event::Resumed,
            Event::Closed,
            Event::Reopened,
            Event::ByMail(Action::Closed),
            Event::ByMail(Action::Refused),
            Event::Void(ReasonCode::TicketVoidRefused),
            Event::Revived(ReasonCode::TicketVoidUndelivered),
            Event::Other("merged by a later version".into()),
        ];
        for e in events {
            let json = serde_json::to_string(&e).unwrap();
            let back: Event = serde_json::from_str(&json).unwrap();
            assert_eq!(back, e, "{json}");
        }
    }

    #[test]
    fn the_text_is_what_the_history_always_said() {
        assert_eq!(
            Event::Severity {
                level: "P2".into(),
                resolution_hours: 24
            }
            .to_string(),
            "severity P2 (resolve within 24 h)"
        );
        assert_eq!(
            Event::ByMail(Action::Reopened).to_string(),
            "reopened by mail"
        );
        assert_eq!(
            Event::Void(ReasonCode::TicketVoidRefused).to_string(),
            format!("void: {}", ReasonCode::TicketVoidRefused.as_str())
        );
        assert_eq!(
            Event::parse("void: not.a.code"),
            Event::Other("void: not.a.code".into())
        );
    }
}
