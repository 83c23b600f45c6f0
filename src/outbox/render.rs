//! Reply templates: plain text files in the config directory, one per
//! kind, `Subject:` on the first line, then an empty line and the body.
//! `{name}` placeholders are filled from the ticket; a line whose
//! placeholders are all empty is left out, so optional details (procedure,
//! contract) need no conditionals.

use std::collections::HashMap;
use std::path::Path;

use crate::config::HelpdeskConfig;
use crate::ticket::{ReplyKind, Ticket};

const KINDS: &[(ReplyKind, &str, &str)] = &[
    (
        ReplyKind::Created,
        "created.txt",
        include_str!("../../config/templates/created.txt"),
    ),
    (
        ReplyKind::InfoRequest,
        "info_request.txt",
        include_str!("../../config/templates/info_request.txt"),
    ),
    (
        ReplyKind::Resumed,
        "resumed.txt",
        include_str!("../../config/templates/resumed.txt"),
    ),
    (
        ReplyKind::Closed,
        "closed.txt",
        include_str!("../../config/templates/closed.txt"),
    ),
    (
        ReplyKind::Reopened,
        "reopened.txt",
        include_str!("../../config/templates/reopened.txt"),
    ),
];

#[derive(Debug, Clone)]
pub struct Template {
    subject: String,
    body: String,
}

#[derive(Debug, Clone)]
pub struct Templates {
    by_kind: HashMap<ReplyKind, Template>,
}

/// A template file that cannot be used, and why.
#[derive(Debug, thiserror::Error)]
#[error("{}: {why}", path.display())]
pub struct TemplateError {
    pub path: std::path::PathBuf,
    pub why: TemplateProblem,
}

/// What is wrong with a template's text.
#[derive(Debug, thiserror::Error)]
pub enum TemplateProblem {
    #[error("{0}")]
    Read(std::io::Error),
    #[error("needs `Subject: ...`, an empty line, then the body")]
    NoBody,
    #[error("the first line must be `Subject: ...`")]
    NoSubject,
    #[error("unknown placeholder {{{name}}}; known: {known}")]
    UnknownPlaceholder { name: String, known: String },
}

impl Templates {
    /// Files in `dir` override the built-in Italian defaults.
    pub fn load(dir: &Path) -> Result<Templates, TemplateError> {
        let mut by_kind = HashMap::new();
        for (kind, file, default) in KINDS {
            let path = dir.join(file);
            let text = match std::fs::read_to_string(&path) {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => default.to_string(),
                Err(e) => {
                    return Err(TemplateError {
                        path,
                        why: TemplateProblem::Read(e),
                    });
                }
            };
            let t = parse(&text)
                .and_then(check_placeholders)
                .map_err(|why| TemplateError {
                    path: path.clone(),
                    why,
                })?;
            by_kind.insert(*kind, t);
        }
        Ok(Templates { by_kind })
    }

    pub fn builtin() -> Templates {
        let by_kind = KINDS
            .iter()
            .map(|(k, _, text)| {
                let t = parse(text).and_then(check_placeholders);
                (*k, t.expect("built-in templates are valid"))
            })
            .collect();
        Templates { by_kind }
    }

    /// (subject, body) for a reply; `extra` fills {message} and {missing}.
    pub fn render(
        &self,
        kind: ReplyKind,
        desk: &HelpdeskConfig,
        ticket: &Ticket,
        extra: &Extra,
    ) -> (String, String) {
        let t = &self.by_kind[&kind];
        let vars = variables(desk, ticket, extra);
        (
            fill_line(&t.subject, &vars).unwrap_or_default(),
            fill_text(&t.body, &vars),
        )
    }
}

#[derive(Debug, Default, Clone)]
pub struct Extra {
    /// The workgroup's text (information request) or the refusal reason.
    pub message: String,
    /// What the quality check found missing.
    pub missing: String,
}

fn parse(text: &str) -> Result<Template, TemplateProblem> {
    let text = text.replace("\r\n", "\n");
    let (first, body) = text.split_once("\n\n").ok_or(TemplateProblem::NoBody)?;
    let subject = first
        .strip_prefix("Subject:")
        .ok_or(TemplateProblem::NoSubject)?
        .trim()
        .to_string();
    Ok(Template {
        subject,
        body: body.to_string(),
    })
}

/// The placeholders a template may use.
/// What a template may say, and where each value comes from: one table,
/// so the check and the filling cannot disagree.
type Value = fn(&HelpdeskConfig, &Ticket, &Extra) -> String;
const PLACEHOLDERS: &[(&str, Value)] = &[
    ("ticket", |_, t, _| t.id.clone()),
    ("helpdesk", |_, t, _| t.helpdesk.clone()),
    ("queue", |_, t, _| t.queue.clone()),
    ("procedure", |_, t, _| {
        t.procedure.clone().unwrap_or_default()
    }),
    ("sector", |_, t, _| t.sector.clone().unwrap_or_default()),
    ("urgency", |_, t, _| t.urgency.as_str().to_string()),
    ("contract", |_, t, _| t.contract.clone().unwrap_or_default()),
    ("status", |_, t, _| t.status.as_str().to_string()),
    ("severity", |_, t, _| t.severity.clone().unwrap_or_default()),
    ("due_at", |_, t, _| {
        t.due_at.map(|d| d.rfc3339()).unwrap_or_default()
    }),
    ("subject", |_, t, _| t.subject.clone()),
    ("next_steps", |desk, t, _| {
        desk.next_steps
            .as_deref()
            .map(|s| s.replace("{sector}", t.sector.as_deref().unwrap_or("")))
            .unwrap_or_default()
    }),
    ("message", |_, _, extra| extra.message.clone()),
    ("missing", |_, _, extra| extra.missing.clone()),
];

fn is_placeholder(name: &str) -> bool {
    PLACEHOLDERS.iter().any(|(n, _)| *n == name)
}

/// A misspelt `{placeholder}` would reach the operator verbatim: refuse it
/// when the templates are loaded (start, SIGHUP, check-config).
fn check_placeholders(t: Template) -> Result<Template, TemplateProblem> {
    for text in [&t.subject, &t.body] {
        let mut rest = text.as_str();
        while let Some(open) = rest.find('{') {
            let Some(close) = rest[open..].find('}') else {
                break;
            };
            let name = &rest[open + 1..open + close];
            if !is_placeholder(name) {
                let known: Vec<&str> = PLACEHOLDERS.iter().map(|(n, _)| *n).collect();
                return Err(TemplateProblem::UnknownPlaceholder {
                    name: name.to_string(),
                    known: known.join(", "),
                });
            }
            rest = &rest[open + close + 1..];
        }
    }
    Ok(t)
}

fn variables(desk: &HelpdeskConfig, t: &Ticket, extra: &Extra) -> HashMap<&'static str, String> {
    PLACEHOLDERS
        .iter()
        .map(|(name, value)| (*name, value(desk, t, extra)))
        .collect()
}

/// Fills one line; `None` when it had placeholders and all were empty.
fn fill_line(line: &str, vars: &HashMap<&'static str, String>) -> Option<String> {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    let mut placeholders = 0;
    let mut filled = 0;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else {
            break;
        };
        let name = &rest[open + 1..open + close];
        out.push_str(&rest[..open]);
        match vars.get(name) {
            Some(value) => {
                placeholders += 1;
                if !value.is_empty() {
                    filled += 1;
                }
                out.push_str(value);
            }
            None => out.push_str(&rest[open..=open + close]),
        }
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
    (placeholders == 0 || filled > 0).then_some(out)
}

fn fill_text(text: &str, vars: &HashMap<&'static str, String>) -> String {
    text.lines()
        .filter_map(|l| fill_line(l, vars))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_with_only_empty_placeholders_are_dropped() {
        let vars = HashMap::from([("a", "x".to_string()), ("b", String::new())]);
        assert_eq!(
            fill_text("A: {a}\nB: {b}\nplain\n{a}{b}", &vars),
            "A: x\nplain\nx"
        );
    }

    #[test]
    fn unknown_placeholder_is_refused_on_load() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("created.txt"),
            "Subject: [{ticket}] ok\n\nCiao {nmoe}\n",
        )
        .unwrap();
        let err = Templates::load(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("created.txt") && err.contains("{nmoe}"),
            "{err}"
        );
    }

    #[test]
    fn builtin_templates_parse() {
        let t = Templates::builtin();
        assert_eq!(t.by_kind.len(), KINDS.len());
    }
}
