//! The service: what the helpdesk stages share (config, the reloadable
//! helpdesk table and templates, store, outbox, signer, authenticator),
//! the look-ups a message needs before its store write, and running a
//! workgroup command as one durable change.

use std::sync::{Arc, RwLock};

use super::replies::Drafter;
use super::transitions::{self, Followup, Refused, WorkgroupCommand};
use crate::auth::Authenticator;
use crate::classify::Classification;
use crate::config::{Config, HelpdeskConfig};
use crate::envelope::canonical_address;
use crate::outbox::Outbox;
use crate::outbox::msgid::{self, Signed, Signer};
use crate::outbox::render::Templates;
use crate::parse::ParsedMail;
use crate::reason::ReasonCode;
use crate::route::HelpdeskTable;
use crate::store::{StoreError, TicketStore};
use crate::ticket::Ticket;

pub struct Service {
    loaded: RwLock<Arc<Loaded>>,
    store: TicketStore,
    outbox: Outbox,
    signer: Arc<Signer>,
    /// SPF/DKIM/DMARC resolver, built once; `None` with `[auth] dns = "off"`.
    authenticator: Option<Authenticator>,
}

/// What SIGHUP replaces: the helpdesks (in the config and as a routing
/// table) and the reply templates. A message works with one snapshot from
/// start to end; settings that need a restart stay as they were.
pub struct Loaded {
    pub config: Arc<Config>,
    pub table: HelpdeskTable,
    pub templates: Arc<Templates>,
}

impl Loaded {
    pub fn new(config: Arc<Config>, templates: Templates) -> Loaded {
        Loaded {
            table: HelpdeskTable::new(config.helpdesks.clone())
                .with_recipient_delimiter(&config.server.recipient_delimiter),
            config,
            templates: Arc::new(templates),
        }
    }
}

/// Why a workgroup command did nothing.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("no ticket {0}")]
    NoTicket(String),
    #[error("ticket {id} belongs to helpdesk {helpdesk} which is not configured")]
    UnknownHelpdesk { id: String, helpdesk: String },
    #[error("{0}")]
    Refused(Refused),
    #[error("{0}")]
    Store(StoreError),
}

/// Signed ids looked at per message: In-Reply-To, then the newest
/// References. A thread's own id is among the last; the bound keeps a
/// header stuffed with ids from costing a store read each.
const MAX_ANSWERED_IDS: usize = 20;

impl Service {
    pub fn new(
        config: Arc<Config>,
        store: TicketStore,
        outbox: Outbox,
        signer: Signer,
        templates: Templates,
    ) -> Service {
        let authenticator = Authenticator::new(&config.auth).unwrap_or_else(|e| {
            // Nothing authenticates then (the safe side); config validation
            // already checked what can fail here.
            tracing::error!(error = %e, "sender authentication disabled");
            None
        });
        Service {
            loaded: RwLock::new(Arc::new(Loaded::new(config, templates))),
            store,
            outbox,
            signer: Arc::new(signer),
            authenticator,
        }
    }

    /// The config as now loaded (helpdesks as of the last SIGHUP).
    pub fn config(&self) -> Arc<Config> {
        self.loaded().config.clone()
    }

    /// The current helpdesk table and templates.
    pub fn loaded(&self) -> Arc<Loaded> {
        self.loaded
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Swaps in new helpdesks and templates (SIGHUP). Messages in flight
    /// finish with the snapshot they started with.
    pub fn reload(&self, helpdesks: Vec<HelpdeskConfig>, templates: Templates) {
        let mut config = Config::clone(&self.config());
        config.helpdesks = helpdesks;
        let next = Arc::new(Loaded::new(Arc::new(config), templates));
        *self.loaded.write().unwrap_or_else(|p| p.into_inner()) = next;
    }

    pub fn store(&self) -> &TicketStore {
        &self.store
    }

    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    pub fn authenticator(&self) -> Option<&Authenticator> {
        self.authenticator.as_ref()
    }

    /// What drafting replies for `desk` needs, from `loaded`.
    pub fn drafter(&self, loaded: &Loaded, desk: &HelpdeskConfig) -> Drafter {
        Drafter::new(desk.clone(), loaded.templates.clone(), self.signer.clone())
    }

    /// The ticket this message refers to: a reply to one of our mails
    /// (signed Message-ID), or a ticket id of this helpdesk in the subject.
    pub async fn find_followup(
        &self,
        desk: &HelpdeskConfig,
        mail: &ParsedMail,
        class: &Classification,
    ) -> Option<Followup> {
        let answered = mail
            .in_reply_to
            .iter()
            .map(|id| (id, ReasonCode::FollowupInReplyTo))
            .chain(
                mail.references
                    .iter()
                    .rev()
                    .map(|id| (id, ReasonCode::FollowupReferences)),
            )
            .take(MAX_ANSWERED_IDS);
        for (id, via) in answered {
            if let Some(signed) = self.our_id(desk, id).await {
                let exists = matches!(self.store.get(&signed.ticket).await, Ok(Some(_)));
                return Some(Followup {
                    ticket_id: signed.ticket,
                    via,
                    signed_for: signed.bound_to,
                    ticket_exists: exists,
                });
            }
        }
        let ticket_id = class.subject_ticket_id.clone()?;
        let exists = self
            .store
            .get(&ticket_id)
            .await
            .ok()
            .flatten()
            .is_some_and(|t| t.helpdesk == desk.name);
        Some(Followup {
            ticket_id,
            via: if exists {
                ReasonCode::FollowupSubjectId
            } else {
                ReasonCode::FollowupUnknownTicket
            },
            signed_for: None,
            ticket_exists: exists,
        })
    }

    /// One of our Message-IDs on a ticket of `desk`, checked against the
    /// addresses that ticket's mail went to.
    async fn our_id(&self, desk: &HelpdeskConfig, id: &str) -> Option<Signed> {
        let prefix = format!("{}-", desk.ticket_prefix);
        // The ticket the id names is read first: its signature is checked
        // against the addresses that ticket's mail went to.
        let named = msgid::ticket_named(id).filter(|t| t.starts_with(&prefix))?;
        let addresses = match self.store.get(named).await {
            Ok(Some(t)) if t.helpdesk == desk.name => sent_to(&t),
            _ => Vec::new(),
        };
        self.signer
            .ticket_of(id, |_| addresses)
            .filter(|s| s.ticket.starts_with(&prefix))
    }

    /// Runs a workgroup member's command as one durable change; its notice
    /// (if any) is drafted in the same write and goes out at once.
    pub async fn command(
        &self,
        id: &str,
        by: &str,
        command: WorkgroupCommand,
    ) -> Result<Ticket, CommandError> {
        let current = self
            .store
            .get(id)
            .await
            .map_err(CommandError::Store)?
            .ok_or_else(|| CommandError::NoTicket(id.to_string()))?;
        let loaded = self.loaded();
        let desk = loaded
            .table
            .helpdesks()
            .iter()
            .find(|d| d.name == current.helpdesk)
            .ok_or_else(|| CommandError::UnknownHelpdesk {
                id: id.to_string(),
                helpdesk: current.helpdesk.clone(),
            })?;
        let drafter = self.drafter(&loaded, desk);
        let stored = self
            .store
            .modify(id, None, |t| {
                let notice = transitions::apply_command(drafter.desk(), t, by, command.clone())
                    .map_err(|Refused(why)| why)?;
                if let Some(wanted) = notice {
                    drafter.add(t, wanted);
                }
                Ok(())
            })
            .await
            .map_err(|e| match e {
                StoreError::Rejected(why) => CommandError::Refused(Refused(why)),
                other => CommandError::Store(other),
            })?;
        let ticket = stored.into_ticket();
        self.outbox.enqueue_queued(&ticket);
        Ok(ticket)
    }
}

/// The canonical addresses a ticket's mail went to: the requester and
/// every reply's recipient (a bound id is checked against these).
fn sent_to(t: &Ticket) -> Vec<String> {
    let mut out = vec![canonical_address(&t.requester)];
    for r in &t.replies {
        let to = canonical_address(&r.to);
        if !out.contains(&to) {
            out.push(to);
        }
    }
    out
}
