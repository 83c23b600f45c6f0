//! Route: which envelope recipients are helpdesk queues.
//!
//! One message to several addresses of one helpdesk makes one ticket (queue
//! of the first such recipient in envelope order, the others recorded);
//! addresses of two helpdesks make one ticket in each. Staff addresses of a
//! helpdesk domain open nothing; every other recipient is none of our
//! business.

use std::collections::HashMap;

use crate::config::HelpdeskConfig;
use crate::envelope::canonical;
use crate::reason::ReasonCode;

#[derive(Debug, Clone)]
pub struct HelpdeskTable {
    helpdesks: Vec<HelpdeskConfig>,
    /// Normalised queue address -> (helpdesk index, queue index).
    queues: HashMap<String, (usize, usize)>,
    /// Normalised reply_from addresses.
    reply_from: Vec<String>,
    /// Lowercase staff domain -> helpdesk index (first one that lists it).
    staff_domains: HashMap<String, usize>,
    /// Recipient delimiters (`[server] recipient_delimiter`).
    delimiters: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutedDesk {
    /// Index into [`HelpdeskTable::helpdesks`].
    pub helpdesk: usize,
    /// Index into that helpdesk's `queues`: the first matching recipient's.
    pub queue: usize,
    /// This helpdesk's queue addresses among the recipients, envelope order,
    /// as written in the config, without duplicates.
    pub recipients: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Routing {
    pub desks: Vec<RoutedDesk>,
    /// Recipients seen and deliberately left alone, with why.
    pub ignored: Vec<(String, ReasonCode)>,
}

/// Lowercase, without surrounding whitespace and angle brackets.
pub fn normalize_address(addr: &str) -> String {
    addr.trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .trim()
        .to_lowercase()
}

fn domain_of(addr: &str) -> Option<&str> {
    addr.rsplit_once('@')
        .map(|(_, d)| d)
        .filter(|d| !d.is_empty())
}

impl HelpdeskTable {
    pub fn new(helpdesks: Vec<HelpdeskConfig>) -> Self {
        let mut queues = HashMap::new();
        let mut reply_from = Vec::new();
        let mut staff_domains = HashMap::new();
        for (h, desk) in helpdesks.iter().enumerate() {
            for (q, queue) in desk.queues.iter().enumerate() {
                // The config check refuses duplicates; keep the first anyway.
                queues
                    .entry(canonical(&queue.address, ""))
                    .or_insert((h, q));
            }
            reply_from.push(canonical(&desk.reply_from, ""));
            for domain in &desk.staff_domains {
                staff_domains
                    .entry(domain.trim().trim_start_matches('@').to_lowercase())
                    .or_insert(h);
            }
        }
        HelpdeskTable {
            helpdesks,
            queues,
            reply_from,
            staff_domains,
            delimiters: String::new(),
        }
    }

    /// Recipients are matched without the extension after one of these
    /// chars, as Postfix does with `recipient_delimiter`.
    pub fn with_recipient_delimiter(mut self, delimiters: &str) -> Self {
        self.delimiters = delimiters.to_string();
        self
    }

    /// The queue of an address as the MTA would deliver it: the whole
    /// address first, then without its extension.
    fn queue_of(&self, addr: &str) -> Option<(usize, usize)> {
        self.queues
            .get(&canonical(addr, ""))
            .or_else(|| self.queues.get(&canonical(addr, &self.delimiters)))
            .copied()
    }

    pub fn helpdesks(&self) -> &[HelpdeskConfig] {
        &self.helpdesks
    }

    /// The (helpdesk, queue) indices of a queue address.
    pub fn lookup(&self, addr: &str) -> Option<(usize, usize)> {
        self.queue_of(addr)
    }

    pub fn route(&self, rcpts: &[String]) -> Routing {
        let mut routing = Routing::default();
        for rcpt in rcpts {
            let addr = canonical(rcpt, &self.delimiters);
            if let Some((h, q)) = self.queue_of(rcpt) {
                let configured = &self.helpdesks[h].queues[q].address;
                match routing.desks.iter_mut().find(|d| d.helpdesk == h) {
                    Some(desk) => {
                        if !desk.recipients.contains(configured) {
                            desk.recipients.push(configured.clone());
                        }
                    }
                    None => routing.desks.push(RoutedDesk {
                        helpdesk: h,
                        queue: q,
                        recipients: vec![configured.clone()],
                    }),
                }
            } else if domain_of(&addr).is_some_and(|d| self.staff_domains.contains_key(d))
                && !routing.ignored.iter().any(|(a, _)| *a == addr)
            {
                routing
                    .ignored
                    .push((addr, ReasonCode::RouteStaffAddressIgnored));
            }
        }
        routing
    }

    /// A queue address or the reply sender of any helpdesk.
    pub fn is_own_address(&self, addr: &str) -> bool {
        self.queue_of(addr).is_some()
            || self.reply_from.contains(&canonical(addr, ""))
            || self.reply_from.contains(&canonical(addr, &self.delimiters))
    }

    pub fn is_helpdesk_recipient(&self, addr: &str) -> bool {
        self.queue_of(addr).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{QueueConfig, RulesConfig};

    fn queue(address: &str) -> QueueConfig {
        QueueConfig {
            address: address.into(),
            name: None,
            procedures: vec![],
            aliases: Default::default(),
            sector: None,
            apply_sector_rules: false,
        }
    }

    fn table() -> HelpdeskTable {
        let desk = |name: &str, prefix: &str, reply: &str, staff: &[&str], queues: &[&str]| {
            HelpdeskConfig {
                name: name.into(),
                ticket_prefix: prefix.into(),
                reply_from: reply.into(),
                staff_domains: staff.iter().map(|s| s.to_string()).collect(),
                default_sector: None,
                next_steps: None,
                queues: queues.iter().map(|a| queue(a)).collect(),
                rules: RulesConfig::default(),
                severities: vec![],
            }
        };
        HelpdeskTable::new(vec![
            desk(
                "01S",
                "SIS",
                "helpdesk.sisemplice@01s.it",
                &[],
                &[
                    "helpdesk.sisemplice.730@01s.it",
                    "helpdesk.sisemplice.isee@01s.it",
                    "helpdesk.sisemplice@01s.it",
                ],
            ),
            desk(
                "Project++",
                "PP",
                "noreply@projectpp.it",
                &["ProjectPP.it"],
                &[
                    "nuovocaso@projectpp.it",
                    "supporto.gestionale@projectpp.it",
                    "supporto.tecnico@projectpp.it",
                ],
            ),
        ])
    }

    fn rcpts(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn single_queue() {
        let r = table().route(&rcpts(&["<NuovoCaso@ProjectPP.it>"]));
        assert_eq!(
            r.desks,
            vec![RoutedDesk {
                helpdesk: 1,
                queue: 0,
                recipients: vec!["nuovocaso@projectpp.it".into()]
            }]
        );
        assert!(r.ignored.is_empty());
    }

    #[test]
    fn recipients_are_matched_as_the_mta_delivers_them() {
        let t = table().with_recipient_delimiter("+");
        for rcpt in [
            "nuovocaso+urgente@projectpp.it",
            "\"nuovocaso\"@projectpp.it",
            "NUOVOCASO@projectpp.it.",
        ] {
            let r = t.route(&rcpts(&[rcpt]));
            assert_eq!(r.desks.len(), 1, "{rcpt}");
            assert_eq!(r.desks[0].queue, 0, "{rcpt}");
        }
        // Without a delimiter configured the extension is a different box.
        assert!(
            table()
                .route(&rcpts(&["nuovocaso+urgente@projectpp.it"]))
                .desks
                .is_empty()
        );
        assert!(t.is_own_address("noreply+x@projectpp.it"));
    }

    #[test]
    fn two_queues_one_desk_first_wins() {
        let r = table().route(&rcpts(&[
            "cliente@altro.it",
            " supporto.tecnico@projectpp.it ",
            "nuovocaso@projectpp.it",
            "SUPPORTO.TECNICO@projectpp.it",
        ]));
        assert_eq!(r.desks.len(), 1);
        assert_eq!(r.desks[0].queue, 2);
        assert_eq!(
            r.desks[0].recipients,
            vec!["supporto.tecnico@projectpp.it", "nuovocaso@projectpp.it"]
        );
    }

    #[test]
    fn two_desks_envelope_order() {
        let r = table().route(&rcpts(&[
            "helpdesk.sisemplice.isee@01s.it",
            "nuovocaso@projectpp.it",
            "helpdesk.sisemplice.730@01s.it",
        ]));
        assert_eq!(r.desks.len(), 2);
        assert_eq!((r.desks[0].helpdesk, r.desks[0].queue), (0, 1));
        assert_eq!(r.desks[0].recipients.len(), 2);
        assert_eq!((r.desks[1].helpdesk, r.desks[1].queue), (1, 0));
    }

    #[test]
    fn staff_ignored_others_not_mentioned() {
        let r = table().route(&rcpts(&[
            "Mario.Rossi@projectpp.it",
            "mario.rossi@projectpp.it",
            "someone@01s.it",
            "x@example.com",
        ]));
        assert!(r.desks.is_empty());
        assert_eq!(
            r.ignored,
            vec![(
                "mario.rossi@projectpp.it".to_string(),
                ReasonCode::RouteStaffAddressIgnored
            )]
        );
    }

    #[test]
    fn own_addresses() {
        let t = table();
        assert!(t.is_own_address("<NOREPLY@projectpp.it>"));
        assert!(t.is_own_address("helpdesk.sisemplice.isee@01S.IT"));
        assert!(!t.is_own_address("mario.rossi@projectpp.it"));
        assert!(t.is_helpdesk_recipient("Helpdesk.Sisemplice@01s.it"));
        assert!(!t.is_helpdesk_recipient("noreply@projectpp.it"));
        assert_eq!(t.lookup("nuovocaso@PROJECTPP.IT"), Some((1, 0)));
        assert_eq!(t.helpdesks().len(), 2);
    }
}
