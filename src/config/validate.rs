//! Stage two of the config: checks that types cannot express.

use std::collections::HashMap;
use std::path::Path;

use super::{Config, ConfigError, ValueError};

pub fn validate(file: &Path, config: &Config) -> Result<(), ConfigError> {
    // The sections are checked in this order so that a file with several
    // mistakes always reports the same first one.
    check_limits(&config.limits)
        .and_then(|()| check_server(&config.server))
        .and_then(|()| check_milter(&config.milter))
        .and_then(|()| check_outbox_and_store(config))
        .and_then(|()| check_auth(&config.auth))
        .and_then(|()| check_helpdesks(&config.helpdesks))
        .map_err(|Problem { key, message }| ConfigError::Invalid {
            file: file.to_path_buf(),
            key,
            message,
        })
}

/// What is wrong, and under which key; `validate` adds the file.
struct Problem {
    key: String,
    message: String,
}

fn problem(key: impl Into<String>, message: impl std::fmt::Display) -> Problem {
    Problem {
        key: key.into(),
        message: message.to_string(),
    }
}

/// Zero would mean "never" or "nothing" for each of these, which no
/// setting is meant to allow.
fn positive(values: &[(&str, u64)]) -> Result<(), Problem> {
    match values.iter().find(|(_, value)| *value == 0) {
        Some((key, _)) => Err(problem(*key, "must be greater than 0")),
        None => Ok(()),
    }
}

fn check_limits(limits: &super::LimitsConfig) -> Result<(), Problem> {
    positive(&[
        ("limits.max_message_size", limits.max_message_size),
        ("limits.max_recipients", limits.max_recipients as u64),
        ("limits.max_connections", limits.max_connections as u64),
        ("limits.command_timeout_secs", limits.command_timeout_secs),
        ("limits.data_timeout_secs", limits.data_timeout_secs),
        ("limits.min_data_rate", limits.min_data_rate),
        ("limits.session_timeout_secs", limits.session_timeout_secs),
        ("limits.next_hop_timeout_secs", limits.next_hop_timeout_secs),
        ("limits.max_mime_parts", limits.max_mime_parts as u64),
        ("limits.max_header_fields", limits.max_header_fields as u64),
        (
            "limits.max_classify_bytes",
            limits.max_classify_bytes as u64,
        ),
        (
            "limits.max_messages_per_ticket",
            limits.max_messages_per_ticket as u64,
        ),
        (
            "limits.stress_idle_timeout_secs",
            limits.stress_idle_timeout_secs,
        ),
    ])?;
    if limits.parse_memory_bytes < limits.max_parse_bytes {
        return Err(problem(
            "limits.parse_memory_bytes",
            format!(
                "must be at least limits.max_parse_bytes ({}), or a message that size could never be parsed",
                limits.max_parse_bytes
            ),
        ));
    }
    if !(1..=100).contains(&limits.stress_threshold_percent) {
        return Err(problem(
            "limits.stress_threshold_percent",
            "must be between 1 and 100",
        ));
    }
    Ok(())
}

fn check_server(server: &super::ServerConfig) -> Result<(), Problem> {
    match server
        .recipient_delimiter
        .chars()
        .find(|c| c.is_whitespace() || *c == '@' || *c == '"')
    {
        Some(c) => Err(problem(
            "server.recipient_delimiter",
            format!("{c:?} cannot separate an address extension"),
        )),
        None => Ok(()),
    }
}

fn check_milter(milter: &super::MilterConfig) -> Result<(), Problem> {
    if milter.only && milter.listen.is_none() {
        return Err(problem(
            "milter.only",
            "needs milter.listen (or --milter ADDR): nothing would listen",
        ));
    }
    positive(&[("milter.read_timeout_secs", milter.read_timeout_secs)])?;
    if milter.max_packet_bytes < 70 * 1024 {
        return Err(problem(
            "milter.max_packet_bytes",
            "must be at least 71680 (a 64 KiB body chunk and its header)",
        ));
    }
    Ok(())
}

fn check_outbox_and_store(config: &Config) -> Result<(), Problem> {
    positive(&[
        (
            "outbox.settle_horizon_secs",
            config.outbox.settle_horizon_secs,
        ),
        (
            "outbox.sweep_interval_secs",
            config.outbox.sweep_interval_secs,
        ),
        (
            "store.retention_days",
            u64::from(config.store.retention_days),
        ),
        (
            "store.retention_sweep_hours",
            u64::from(config.store.retention_sweep_hours),
        ),
    ])
}

fn check_auth(auth: &super::AuthConfig) -> Result<(), Problem> {
    if let Some(secs) = auth.dns_timeout_secs {
        positive(&[("auth.dns_timeout_secs", secs)])?;
    }
    if auth.dns == super::DnsMode::System && auth.nameservers.is_empty() {
        // Fail at startup, not on the first message.
        if let Err(e) = mail_auth::hickory_resolver::system_conf::read_system_conf() {
            return Err(problem(
                "auth.dns",
                format!(
                    "\"system\" needs the resolvers of /etc/resolv.conf, which cannot be read ({e}); set auth.nameservers or use \"off\""
                ),
            ));
        }
    }
    Ok(())
}

/// Names and prefixes are per helpdesk, but a ticket prefix or a queue
/// address used twice would make routing ambiguous, so those are checked
/// across all of them.
fn check_helpdesks(helpdesks: &[super::HelpdeskConfig]) -> Result<(), Problem> {
    let mut seen_address: HashMap<String, String> = HashMap::new();
    let mut seen_prefix: HashMap<String, String> = HashMap::new();
    for (h, desk) in helpdesks.iter().enumerate() {
        let key = |rest: &str| format!("helpdesk[{h}] ({}).{rest}", desk.name);
        check_desk_identity(desk, &key, &mut seen_prefix)?;
        check_address(&desk.reply_from).map_err(|m| problem(key("reply_from"), m))?;
        check_queues(desk, &key, &mut seen_address)?;
        check_severities(desk, &key)?;
    }
    Ok(())
}

/// `key` names a key below this helpdesk, as errors report it.
fn check_desk_identity(
    desk: &super::HelpdeskConfig,
    key: &impl Fn(&str) -> String,
    seen_prefix: &mut HashMap<String, String>,
) -> Result<(), Problem> {
    if desk.name.trim().is_empty() {
        return Err(problem(key("name"), "must not be empty"));
    }
    if desk.ticket_prefix.is_empty()
        || !desk
            .ticket_prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric())
    {
        return Err(problem(
            key("ticket_prefix"),
            format!("`{}` must be ASCII letters and digits", desk.ticket_prefix),
        ));
    }
    // Without case: ticket ids are found in subjects that way.
    if let Some(other) =
        seen_prefix.insert(desk.ticket_prefix.to_ascii_uppercase(), desk.name.clone())
    {
        return Err(problem(
            key("ticket_prefix"),
            format!(
                "`{}` is already used by helpdesk {other}",
                desk.ticket_prefix
            ),
        ));
    }
    Ok(())
}

fn check_queues(
    desk: &super::HelpdeskConfig,
    key: &impl Fn(&str) -> String,
    seen_address: &mut HashMap<String, String>,
) -> Result<(), Problem> {
    if desk.queues.is_empty() {
        return Err(problem(key("queue"), "a helpdesk needs at least one queue"));
    }
    for (q, queue) in desk.queues.iter().enumerate() {
        let address = || key(&format!("queue[{q}].address"));
        check_address(&queue.address).map_err(|m| problem(address(), m))?;
        check_aliases(queue).map_err(|m| problem(key(&format!("queue[{q}].aliases")), m))?;
        let lower = queue.address.to_lowercase();
        if let Some(other) = seen_address.insert(lower, desk.name.clone()) {
            return Err(problem(
                address(),
                format!("`{}` is already a queue of {other}", queue.address),
            ));
        }
    }
    Ok(())
}

fn check_severities(
    desk: &super::HelpdeskConfig,
    key: &impl Fn(&str) -> String,
) -> Result<(), Problem> {
    match desk
        .severities
        .iter()
        .position(|sev| sev.level.trim().is_empty())
    {
        Some(s) => Err(problem(
            key(&format!("severity[{s}].level")),
            "must not be empty",
        )),
        None => Ok(()),
    }
}

/// Aliases name procedures of their queue, are not empty, and no alias
/// stands for two procedures (which one would it pick?).
fn check_aliases(queue: &super::QueueConfig) -> Result<(), ValueError> {
    let mut seen: HashMap<String, &str> = HashMap::new();
    for name in &queue.procedures {
        seen.insert(name.trim().to_lowercase(), name);
    }
    for (procedure, aliases) in &queue.aliases {
        if !queue.procedures.contains(procedure) {
            return Err(ValueError::UnknownProcedure {
                procedure: procedure.clone(),
                known: queue.procedures.join(", "),
            });
        }
        for alias in aliases {
            let folded = alias.trim().to_lowercase();
            if folded.is_empty() {
                return Err(ValueError::EmptyAlias(procedure.clone()));
            }
            match seen.insert(folded, procedure) {
                Some(other) if other != procedure => {
                    return Err(ValueError::AmbiguousAlias {
                        alias: alias.clone(),
                        other: other.to_string(),
                        procedure: procedure.clone(),
                    });
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// A plain `local@domain` address; no display names or angle brackets.
pub fn check_address(addr: &str) -> Result<(), ValueError> {
    let Some((local, domain)) = addr.rsplit_once('@') else {
        return Err(ValueError::Address(addr.to_string()));
    };
    let ok = !local.is_empty()
        && !domain.is_empty()
        && domain.contains('.')
        && !addr
            .chars()
            .any(|c| c.is_whitespace() || "<>,;\"".contains(c));
    if ok {
        Ok(())
    } else {
        Err(ValueError::Address(addr.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::super::patronato_queue as queue;

    #[test]
    fn aliases_name_their_queues_procedures_once() {
        assert!(
            check_aliases(&queue(&[
                ("ANF-AUU", &["ANF", "AUU"]),
                ("Contabilità INAC", &["INAC"])
            ]))
            .is_ok()
        );
        let err = check_aliases(&queue(&[("ANF", &["AUU"])]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("not one of this queue's procedures"), "{err}");
        let err = check_aliases(&queue(&[("ANF-AUU", &[" "])]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("empty"), "{err}");
        let err = check_aliases(&queue(&[
            ("ANF-AUU", &["INAC"]),
            ("Contabilità INAC", &["inac"]),
        ]))
        .unwrap_err()
        .to_string();
        assert!(err.contains("would name both"), "{err}");
        // An alias that is another procedure's name.
        let err = check_aliases(&queue(&[("ANF-AUU", &["patronato"])]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("would name both"), "{err}");
    }
}
