//! Stage two of the config: checks that types cannot express.

use std::collections::HashMap;
use std::path::Path;

use super::{Config, ConfigError};

pub fn validate(file: &Path, config: &Config) -> Result<(), ConfigError> {
    let invalid = |key: String, message: String| ConfigError::Invalid {
        file: file.to_path_buf(),
        key,
        message,
    };
    let limits = &config.limits;
    for (key, value) in [
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
    ] {
        if value == 0 {
            return Err(invalid(key.into(), "must be greater than 0".into()));
        }
    }

    if limits.parse_memory_bytes < limits.max_parse_bytes {
        return Err(invalid(
            "limits.parse_memory_bytes".into(),
            format!(
                "must be at least limits.max_parse_bytes ({}), or a message that size could never be parsed",
                limits.max_parse_bytes
            ),
        ));
    }
    if !(1..=100).contains(&limits.stress_threshold_percent) {
        return Err(invalid(
            "limits.stress_threshold_percent".into(),
            "must be between 1 and 100".into(),
        ));
    }
    if let Some(c) = config
        .server
        .recipient_delimiter
        .chars()
        .find(|c| c.is_whitespace() || *c == '@' || *c == '"')
    {
        return Err(invalid(
            "server.recipient_delimiter".into(),
            format!("{c:?} cannot separate an address extension"),
        ));
    }

    let milter = &config.milter;
    if milter.only && milter.listen.is_none() {
        return Err(invalid(
            "milter.only".into(),
            "needs milter.listen (or --milter ADDR): nothing would listen".into(),
        ));
    }
    if milter.read_timeout_secs == 0 {
        return Err(invalid(
            "milter.read_timeout_secs".into(),
            "must be greater than 0".into(),
        ));
    }
    if milter.max_packet_bytes < 70 * 1024 {
        return Err(invalid(
            "milter.max_packet_bytes".into(),
            "must be at least 71680 (a 64 KiB body chunk and its header)".into(),
        ));
    }

    for (key, value) in [
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
    ] {
        if value == 0 {
            return Err(invalid(key.into(), "must be greater than 0".into()));
        }
    }

    if config.auth.dns_timeout_secs == Some(0) {
        return Err(invalid(
            "auth.dns_timeout_secs".into(),
            "must be greater than 0".into(),
        ));
    }
    if config.auth.dns == super::DnsMode::System && config.auth.nameservers.is_empty() {
        // Fail at startup, not on the first message.
        if let Err(e) = mail_auth::hickory_resolver::system_conf::read_system_conf() {
            return Err(invalid(
                "auth.dns".into(),
                format!(
                    "\"system\" needs the resolvers of /etc/resolv.conf, which cannot be read ({e}); set auth.nameservers or use \"off\""
                ),
            ));
        }
    }

    let mut seen_address: HashMap<String, String> = HashMap::new();
    let mut seen_prefix: HashMap<String, String> = HashMap::new();
    for (h, desk) in config.helpdesks.iter().enumerate() {
        let key = |rest: &str| format!("helpdesk[{h}] ({}).{rest}", desk.name);
        if desk.name.trim().is_empty() {
            return Err(invalid(key("name"), "must not be empty".into()));
        }
        if desk.ticket_prefix.is_empty()
            || !desk
                .ticket_prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric())
        {
            return Err(invalid(
                key("ticket_prefix"),
                format!("`{}` must be ASCII letters and digits", desk.ticket_prefix),
            ));
        }
        if let Some(other) =
            seen_prefix.insert(desk.ticket_prefix.to_ascii_uppercase(), desk.name.clone())
        {
            return Err(invalid(
                key("ticket_prefix"),
                format!(
                    "`{}` is already used by helpdesk {other}",
                    desk.ticket_prefix
                ),
            ));
        }
        check_address(&desk.reply_from).map_err(|m| invalid(key("reply_from"), m))?;
        if desk.queues.is_empty() {
            return Err(invalid(
                key("queue"),
                "a helpdesk needs at least one queue".into(),
            ));
        }
        for (q, queue) in desk.queues.iter().enumerate() {
            check_address(&queue.address)
                .map_err(|m| invalid(key(&format!("queue[{q}].address")), m))?;
            check_aliases(queue).map_err(|m| invalid(key(&format!("queue[{q}].aliases")), m))?;
            let lower = queue.address.to_lowercase();
            if let Some(other) = seen_address.insert(lower, desk.name.clone()) {
                return Err(invalid(
                    key(&format!("queue[{q}].address")),
                    format!("`{}` is already a queue of {other}", queue.address),
                ));
            }
        }
        for (s, sev) in desk.severities.iter().enumerate() {
            if sev.level.trim().is_empty() {
                return Err(invalid(
                    key(&format!("severity[{s}].level")),
                    "must not be empty".into(),
                ));
            }
        }
    }
    Ok(())
}

/// Aliases name procedures of their queue, are not empty, and no alias
/// stands for two procedures (which one would it pick?).
fn check_aliases(queue: &super::QueueConfig) -> Result<(), String> {
    let mut seen: HashMap<String, &str> = HashMap::new();
    for name in &queue.procedures {
        seen.insert(name.trim().to_lowercase(), name);
    }
    for (procedure, aliases) in &queue.aliases {
        if !queue.procedures.contains(procedure) {
            return Err(format!(
                "`{procedure}` is not one of this queue's procedures ({})",
                queue.procedures.join(", ")
            ));
        }
        for alias in aliases {
            let folded = alias.trim().to_lowercase();
            if folded.is_empty() {
                return Err(format!("an alias of `{procedure}` is empty"));
            }
            match seen.insert(folded, procedure) {
                Some(other) if other != procedure => {
                    return Err(format!(
                        "`{alias}` would name both `{other}` and `{procedure}`"
                    ));
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// A plain `local@domain` address; no display names or angle brackets.
pub fn check_address(addr: &str) -> Result<(), String> {
    let Some((local, domain)) = addr.rsplit_once('@') else {
        return Err(format!("`{addr}` is not an address (local@domain)"));
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
        Err(format!("`{addr}` is not an address (local@domain)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(aliases: &[(&str, &[&str])]) -> super::super::QueueConfig {
        super::super::QueueConfig {
            address: "helpdesk.sisemplice.patronato@01s.it".into(),
            name: None,
            procedures: vec![
                "ANF-AUU".into(),
                "Contabilità INAC".into(),
                "Patronato".into(),
            ],
            aliases: aliases
                .iter()
                .map(|(p, a)| (p.to_string(), a.iter().map(|s| s.to_string()).collect()))
                .collect(),
            sector: None,
            apply_sector_rules: false,
        }
    }

    #[test]
    fn aliases_name_their_queues_procedures_once() {
        assert!(
            check_aliases(&queue(&[
                ("ANF-AUU", &["ANF", "AUU"]),
                ("Contabilità INAC", &["INAC"])
            ]))
            .is_ok()
        );
        let err = check_aliases(&queue(&[("ANF", &["AUU"])])).unwrap_err();
        assert!(err.contains("not one of this queue's procedures"), "{err}");
        let err = check_aliases(&queue(&[("ANF-AUU", &[" "])])).unwrap_err();
        assert!(err.contains("empty"), "{err}");
        let err = check_aliases(&queue(&[
            ("ANF-AUU", &["INAC"]),
            ("Contabilità INAC", &["inac"]),
        ]))
        .unwrap_err();
        assert!(err.contains("would name both"), "{err}");
        // An alias that is another procedure's name.
        let err = check_aliases(&queue(&[("ANF-AUU", &["patronato"])])).unwrap_err();
        assert!(err.contains("would name both"), "{err}");
    }
}
