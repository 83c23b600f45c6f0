//! One milter connection from the MTA: the envelope and the message arrive
//! as events; mail with a helpdesk recipient is collected (headers and
//! body, into a spool) and run through the pipeline at end of message,
//! everything else is accepted as soon as its recipients are known.
//!
//! The verdict at end of message is sent only after the ticket change is on
//! disk; the accept is recorded, and the replies written with the ticket
//! released, just before it goes out (the milter never sees the delivery
//! itself, nor anything after its verdict).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::watch;

use crate::desk::pipeline::{self, Outcome, Verdict};
use crate::envelope::ClientInfo;
use crate::envelope::Envelope;
use crate::outbox::settle::HopVerdict;
use crate::server::{Phase, Shared};
use crate::spool::Spool;
use crate::tag;
use crate::wire::milter::{self as codec, CodecError, Command, Family, Response, action, step};
use crate::wire::reply::Reply;

pub struct MilterSession<S> {
    stream: BufReader<S>,
    shared: Arc<Shared>,
    id: String,
    client: ClientInfo,
    /// Macros the MTA sent, names without braces (`i`, `auth_authen`).
    macros: HashMap<String, String>,
    message: Option<Message>,
    /// Protocol flags agreed at negotiation (steps we do not answer).
    protocol: u32,
    phase: watch::Receiver<Phase>,
    out: Vec<u8>,
}

/// Envelope steps we never refuse: answering them would only cost the
/// MTA a round trip each, so we ask it not to wait for an answer.
const NO_REPLY_STEPS: u32 =
    step::NO_REPLY_CONNECT | step::NO_REPLY_HELO | step::NO_REPLY_MAIL | step::NO_REPLY_RCPT;

/// One message, from MAIL to end of message or abort.
struct Message {
    from: String,
    rcpts: Vec<String>,
    handling: Handling,
    /// Fields to remove when we tag the message, with their index among
    /// the fields of that name (what SMFIR_CHGHEADER counts): forged
    /// `X-Ticketgate-*` fields, and `Authentication-Results` fields that
    /// carry our authserv-id.
    forged: Vec<(String, u32)>,
    forged_bytes: usize,
    /// Occurrences so far of each field name in `forged`, and of
    /// `Authentication-Results`, lowercased.
    seen: HashMap<String, u32>,
    size: u64,
    /// `SIZE=` of MAIL: all we learn of the size of mail we accept unseen.
    declared_size: Option<u64>,
    too_large: bool,
    /// The spool could not be written: a temporary failure at the end.
    spool_failed: bool,
    /// More recipients or forged tags than we keep: refused at the end.
    over_limits: bool,
    started: Instant,
}

/// Bounds on what one connection or message may make us hold, whatever
/// the MTA sends.
const MAX_MACROS: usize = 256;
const MAX_RCPTS: usize = 1000;
const MAX_FORGED_BYTES: usize = 64 * 1024;

impl Message {
    /// Past `MAX_RCPTS` (Postfix's own default limit) the message is
    /// refused at end of message rather than routed on part of its
    /// recipients.
    fn add_rcpt(&mut self, rcpt: String) {
        if self.rcpts.len() < MAX_RCPTS {
            self.rcpts.push(rcpt);
        } else {
            self.over_limits = true;
        }
    }

    /// Looks at one header field: ours forged, or an
    /// `Authentication-Results` claiming `authserv_id`, is noted for removal.
    fn note_header(&mut self, name: &str, value: &[u8], authserv_id: &str) {
        let ours = tag::is_our_name(name);
        let auth_results = name.eq_ignore_ascii_case("authentication-results");
        if !ours && !auth_results {
            return;
        }
        if self.forged_bytes + name.len() > MAX_FORGED_BYTES {
            self.over_limits = true;
            return;
        }
        let index = self.seen.entry(name.to_ascii_lowercase()).or_insert(0);
        *index += 1;
        let index = *index;
        if tag::forged(name.as_bytes(), value, authserv_id, true).is_some() {
            self.forged_bytes += name.len();
            self.forged.push((name.to_string(), index));
        }
    }

    fn new(from: String) -> Message {
        Message {
            from,
            rcpts: Vec::new(),
            handling: Handling::Undecided,
            forged: Vec::new(),
            forged_bytes: 0,
            seen: HashMap::new(),
            size: 0,
            declared_size: None,
            too_large: false,
            spool_failed: false,
            over_limits: false,
            started: Instant::now(),
        }
    }
}

enum Handling {
    /// Recipients still coming.
    Undecided,
    /// No helpdesk recipient: accepted, the MTA sends nothing more.
    Accepted,
    /// Collected for the pipeline.
    Inspect(Box<Spool>),
}

enum Flow {
    Continue,
    Quit,
}

impl<S: AsyncRead + AsyncWrite + Unpin> MilterSession<S> {
    pub fn new(stream: S, shared: Arc<Shared>, phase: watch::Receiver<Phase>) -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_uppercase();
        MilterSession {
            stream: BufReader::with_capacity(64 * 1024, stream),
            shared,
            id,
            client: ClientInfo::default(),
            macros: HashMap::new(),
            message: None,
            protocol: 0,
            phase,
            out: Vec::new(),
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub async fn run(mut self) {
        while let Some((code, data)) = self.next_packet().await {
            let command = match Command::parse(code, &data) {
                Ok(c) => c,
                Err(e) => {
                    // Out of step with the MTA: closing makes it apply its
                    // milter_default_action to the message.
                    tracing::warn!(session = %self.id, error = %e, "milter: bad packet, closing");
                    break;
                }
            };
            let flow = self.handle(command).await;
            if self.flush().await.is_err() || matches!(flow, Flow::Quit) {
                break;
            }
        }
        if self.message.is_some() {
            tracing::info!(session = %self.id, "milter: connection closed inside a message");
        }
    }

    /// The next packet, or `None` when the connection should close: end of
    /// stream, error, timeout, or a shutdown while no message is open.
    async fn next_packet(&mut self) -> Option<(u8, Vec<u8>)> {
        let milter = &self.shared.config.milter;
        let (timeout, max) = (milter.read_timeout(), milter.max_packet_bytes);
        if self.should_close_for_shutdown() {
            return None;
        }
        let read = tokio::time::timeout(timeout, codec::read_packet(&mut self.stream, max));
        tokio::pin!(read);
        let result = loop {
            tokio::select! {
                result = &mut read => break result,
                changed = self.phase.changed() => {
                    let closing = changed.is_err() || *self.phase.borrow() == Phase::Closing;
                    // Dropping a half-read packet is fine only because the
                    // connection closes with it.
                    if closing || self.message.is_none() {
                        return None;
                    }
                }
            }
        };
        match result {
            Ok(Ok(packet)) => packet,
            Ok(Err(CodecError::Io(e))) => {
                tracing::debug!(session = %self.id, error = %e, "milter: connection error");
                None
            }
            Ok(Err(e)) => {
                tracing::warn!(session = %self.id, error = %e, "milter: closing");
                None
            }
            Err(_) => {
                tracing::info!(session = %self.id, "milter: read timeout, closing");
                None
            }
        }
    }

    /// Draining closes connections between messages; Postfix applies its
    /// milter_default_action (tempfail) to what comes next on them.
    fn should_close_for_shutdown(&self) -> bool {
        match *self.phase.borrow() {
            Phase::Running => false,
            Phase::Draining => self.message.is_none(),
            Phase::Closing => true,
        }
    }

    fn respond(&mut self, response: Response) {
        response.encode(&mut self.out);
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        let stream = self.stream.get_mut();
        let written = stream.write_all(&self.out).await;
        self.out.clear();
        written?;
        stream.flush().await
    }

    async fn handle(&mut self, command: Command) -> Flow {
        match command {
            Command::OptionNegotiation {
                version,
                actions,
                protocol,
            } => return self.negotiate(version, actions, protocol),
            Command::Macros { pairs, .. } => self.remember(pairs),
            Command::Connect {
                hostname,
                family,
                port,
                address,
            } => {
                self.connect(hostname, family, port, address);
                self.continue_unless(step::NO_REPLY_CONNECT);
            }
            Command::Helo(helo) => {
                self.client.helo = Some(helo);
                self.continue_unless(step::NO_REPLY_HELO);
            }
            Command::Mail(args) => {
                self.mail(&args);
                self.continue_unless(step::NO_REPLY_MAIL);
            }
            Command::Rcpt(args) => {
                let rcpt = bare_address(args.first().map(String::as_str).unwrap_or(""));
                self.message_mut().add_rcpt(rcpt);
                self.continue_unless(step::NO_REPLY_RCPT);
            }
            Command::Data => self.respond_to_content(),
            Command::Header { name, value } => {
                let authserv_id = self.shared.config.server.hostname.clone();
                self.message_mut().note_header(&name, &value, &authserv_id);
                self.collect(&header_bytes(&name, &value)).await;
                self.respond_to_content();
            }
            Command::EndOfHeaders => {
                self.collect(b"\r\n").await;
                self.respond_to_content();
            }
            Command::Body(chunk) => {
                self.collect(&chunk).await;
                self.respond_to_content();
            }
            Command::EndOfMessage(chunk) => {
                self.collect(&chunk).await;
                self.end_of_message().await;
            }
            Command::Abort => self.message = None,
            Command::Quit => return Flow::Quit,
            Command::QuitNewConnection => {
                self.client = ClientInfo::default();
                self.macros.clear();
                self.message = None;
            }
            Command::Unknown(_) => self.respond(Response::Continue),
        }
        Flow::Continue
    }

    fn negotiate(&mut self, version: u32, actions: u32, protocol: u32) -> Flow {
        let wanted = action::ADD_HEADERS | action::CHANGE_HEADERS;
        if version < codec::OLDEST_VERSION || actions & wanted != wanted {
            tracing::error!(
                session = %self.id,
                version,
                actions = format!("{actions:#x}"),
                "milter: the MTA does not offer protocol 2+ with adding and changing headers; closing"
            );
            return Flow::Quit;
        }
        // Skip what we do not use and answer only what we may refuse, as
        // far as the MTA can.
        self.protocol = protocol & (step::NO_UNKNOWN | NO_REPLY_STEPS);
        self.respond(Response::OptionNegotiation {
            version: version.min(codec::VERSION),
            actions: wanted,
            protocol: self.protocol,
        });
        Flow::Continue
    }

    fn continue_unless(&mut self, no_reply: u32) {
        if self.protocol & no_reply == 0 {
            self.respond(Response::Continue);
        }
    }

    fn remember(&mut self, pairs: Vec<(String, String)>) {
        for (name, value) in pairs {
            let name = name.trim_start_matches('{').trim_end_matches('}');
            // Postfix sends a couple of dozen names; a flood of new ones
            // is not kept.
            if self.macros.len() < MAX_MACROS || self.macros.contains_key(name) {
                self.macros.insert(name.to_string(), value);
            }
        }
    }

    fn envelope<'a>(&'a self, message: &'a Message) -> Envelope<'a> {
        Envelope {
            session: &self.id,
            client: &self.client,
            from: &message.from,
            rcpts: &message.rcpts,
        }
    }

    fn macro_value(&self, name: &str) -> Option<&str> {
        self.macros
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    fn connect(&mut self, hostname: String, family: Family, port: u16, address: String) {
        let inet = matches!(family, Family::Inet4 | Family::Inet6);
        self.client = ClientInfo {
            addr: if inet {
                // IPv6 arrives as "IPv6:2001:db8::1".
                Some(address.trim_start_matches("IPv6:").to_string())
            } else {
                self.macro_value("client_addr").map(str::to_string)
            },
            port: inet.then(|| port.to_string()),
            // Postfix says `[192.0.2.1]` when the client has no name.
            name: Some(hostname).filter(|h| !h.is_empty() && h != "unknown" && !h.starts_with('[')),
            ..ClientInfo::default()
        };
        tracing::debug!(session = %self.id, client = ?self.client.addr, "milter: client connected");
    }

    fn mail(&mut self, args: &[String]) {
        if let Some(user) = self.macro_value("auth_authen") {
            tracing::debug!(session = %self.id, user, "milter: SASL-authenticated client");
        }
        let sender = args.first().map(String::as_str).unwrap_or("");
        let mut message = Message::new(bare_address(sender));
        message.declared_size = args.iter().skip(1).find_map(|a| {
            let (key, value) = a.split_once('=')?;
            key.eq_ignore_ascii_case("SIZE")
                .then(|| value.parse().ok())
                .flatten()
        });
        self.message = Some(message);
    }

    /// The open message; a broken MTA that skips MAIL gets a null sender.
    fn message_mut(&mut self) -> &mut Message {
        self.message
            .get_or_insert_with(|| Message::new(String::new()))
    }

    /// Decides, once the recipients are all known, whether this message is
    /// ours: `Accept` ends the MTA's events for mail that is not.
    fn respond_to_content(&mut self) {
        let accepted = self.decide();
        self.respond(if accepted {
            Response::Accept
        } else {
            Response::Continue
        });
    }

    /// Returns whether the message is accepted without inspection.
    fn decide(&mut self) -> bool {
        let shared = self.shared.clone();
        let config = &shared.config;
        let message = self.message_mut();
        if !matches!(message.handling, Handling::Undecided) {
            return matches!(message.handling, Handling::Accepted);
        }
        if shared.pipeline.routes_to_helpdesk(&message.rcpts) {
            message.handling = Handling::Inspect(Box::new(Spool::new(
                &config.server.data_dir.join("spool"),
                config.limits.spool_memory_bytes,
            )));
            return false;
        }
        message.handling = Handling::Accepted;
        self.log_accepted_unseen();
        true
    }

    /// The summary line of mail accepted without inspection, as the SMTP
    /// modes log mail that passes through.
    fn log_accepted_unseen(&self) {
        let Some(message) = &self.message else {
            return;
        };
        let envelope = self.envelope(message);
        pipeline::log_message(
            &envelope,
            message.declared_size.unwrap_or(0),
            &Outcome::default(),
            &verdict_accept(),
            self.macro_value("i"),
            message.started,
        );
    }

    /// Appends message bytes to the spool of a message under inspection.
    async fn collect(&mut self, bytes: &[u8]) {
        self.decide();
        let max = self.shared.config.limits.max_message_size;
        let id = self.id.clone();
        let message = self.message_mut();
        let Handling::Inspect(spool) = &mut message.handling else {
            return;
        };
        message.size += bytes.len() as u64;
        message.too_large |= message.size > max;
        if message.too_large || message.spool_failed {
            return;
        }
        if let Err(e) = spool.write(bytes).await {
            tracing::error!(session = %id, error = %e, "milter: cannot write the spool");
            message.spool_failed = true;
        }
    }

    async fn end_of_message(&mut self) {
        self.decide();
        let Some(mut message) = self.message.take() else {
            self.respond(Response::Accept);
            return;
        };
        let Handling::Inspect(mut spool) =
            std::mem::replace(&mut message.handling, Handling::Accepted)
        else {
            self.respond(Response::Accept);
            return;
        };
        let envelope = self.envelope(&message);
        let verdict = if message.over_limits {
            Err(Reply::new(
                554,
                "5.5.3",
                "Too many recipients or X-Ticketgate header fields",
            ))
        } else if message.too_large {
            let max = self.shared.config.limits.max_message_size;
            Err(Reply::new(
                552,
                "5.3.4",
                format!("Message size exceeds fixed limit of {max} bytes"),
            ))
        } else if message.spool_failed || spool.finish().await.is_err() {
            Err(Reply::new(
                451,
                "4.3.0",
                "Local error writing the message, try again later",
            ))
        } else {
            self.shared
                .pipeline
                .prepare(&envelope, &spool)
                .await
                .map_err(|refusal| refusal.reply())
        };
        match verdict {
            Err(reply) => {
                pipeline::log_refused(&envelope, &reply, message.started);
                self.respond(Response::ReplyCode(reply_text(&reply)));
            }
            Ok(verdict) => self.accept(verdict, &message, spool.len()).await,
        }
    }

    /// Tags the message and accepts it. The delivery is recorded (and the
    /// replies written with the ticket released) before the verdict goes
    /// out: once the MTA has our accept we hear nothing more of the
    /// message, so a crash after it must find the record on disk. If it
    /// cannot be recorded the MTA is told to try again; the retry lands on
    /// the same ticket.
    async fn accept(&mut self, verdict: Verdict, message: &Message, size: u64) {
        let recorded = self
            .shared
            .pipeline
            .record_delivery(&verdict, HopVerdict::Accepted)
            .await;
        let reply = match recorded {
            Ok(()) => {
                for edit in header_edits(&verdict, &message.forged) {
                    self.respond(edit);
                }
                self.respond(Response::Accept);
                verdict_accept()
            }
            Err(_) => {
                let reply = Reply::new(451, "4.3.0", "Ticket store unavailable, try again later");
                self.respond(Response::ReplyCode(reply_text(&reply)));
                reply
            }
        };
        if let Err(e) = self.flush().await {
            // The MTA did not get our verdict and applies its default
            // action; a retry lands on the same ticket and sends nothing
            // twice.
            tracing::warn!(session = %self.id, error = %e, "milter: cannot send the verdict");
        }
        let envelope = self.envelope(message);
        pipeline::log_message(
            &envelope,
            size,
            &verdict.outcome,
            &reply,
            self.macro_value("i"),
            message.started,
        );
    }
}

/// What we told the MTA, for the log: its own answer to the client is not
/// ours to see.
fn verdict_accept() -> Reply {
    Reply::new(250, "2.0.0", "Milter verdict: accept")
}

/// The header edits for a tagged message: forged fields deleted (last
/// first, so no deletion moves the index of another), then ours inserted
/// at the top in their order.
fn header_edits(verdict: &Verdict, forged: &[(String, u32)]) -> Vec<Response> {
    if verdict.edits.add.is_empty() {
        // Passed through (shadow mode, or no longer a helpdesk after a
        // reload): untouched, like in the SMTP modes.
        return vec![];
    }
    let mut edits = Vec::new();
    for (name, index) in forged.iter().rev() {
        edits.push(Response::ChangeHeader {
            index: *index,
            name: name.clone(),
            value: String::new(),
        });
    }
    for (name, value) in verdict.edits.add.iter().rev() {
        edits.push(Response::InsertHeader {
            index: 0,
            name: name.to_string(),
            value: value.clone(),
        });
    }
    edits
}

/// A header field as it was on the wire: the MTA sends name and value
/// apart, the value without the space after the colon and its folds with
/// bare LF.
fn header_bytes(name: &str, value: &[u8]) -> Vec<u8> {
    let mut line = Vec::with_capacity(name.len() + value.len() + 4);
    line.extend_from_slice(name.as_bytes());
    line.extend_from_slice(b": ");
    let mut previous = 0u8;
    for &b in value {
        if b == b'\n' && previous != b'\r' {
            line.push(b'\r');
        }
        line.push(b);
        previous = b;
    }
    line.extend_from_slice(b"\r\n");
    line
}

/// `<a@b>` to `a@b`; `<>` to the empty (null) sender.
fn bare_address(arg: &str) -> String {
    let arg = arg.trim();
    arg.strip_prefix('<')
        .and_then(|a| a.strip_suffix('>'))
        .unwrap_or(arg)
        .to_string()
}

/// Our SMTP reply as the MTA should say it.
fn reply_text(reply: &Reply) -> String {
    let mut text = reply.code.to_string();
    if !reply.enhanced.is_empty() {
        text.push(' ');
        text.push_str(&reply.enhanced);
    }
    for line in &reply.lines {
        text.push(' ');
        // A lone % would be read as a format directive by sendmail-style
        // MTAs.
        text.push_str(&line.replace('%', "%%"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_bytes_restores_the_wire_form() {
        assert_eq!(
            header_bytes("Subject", b"a\n\tfolded"),
            b"Subject: a\r\n\tfolded\r\n"
        );
        assert_eq!(header_bytes("X", b"a\r\n b"), b"X: a\r\n b\r\n");
    }

    #[test]
    fn addresses_lose_their_brackets() {
        assert_eq!(bare_address("<a@example.org>"), "a@example.org");
        assert_eq!(bare_address("<>"), "");
        assert_eq!(bare_address("a@example.org"), "a@example.org");
    }

    #[test]
    fn forged_fields_are_deleted_last_first_then_ours_inserted() {
        let mut verdict = Verdict::pass_through();
        verdict.edits.add = vec![
            ("X-Ticketgate-Ticket", "PP-2026-1".into()),
            ("Authentication-Results", "gate; none".into()),
        ];
        let mut message = Message::new(String::new());
        for (name, value) in [
            ("X-Ticketgate-Ticket", "PP-2026-999999"),
            ("Authentication-Results", "other.example; spf=pass"),
            ("x-ticketgate-ticket", "x"),
            ("Authentication-Results", " (c) GATE; dkim=pass"),
            ("X-Ticketgate-Action", "closed"),
        ] {
            message.note_header(name, value.as_bytes(), "gate");
        }
        let forged = message.forged;
        let edits = header_edits(&verdict, &forged);
        let change = |index, name: &str| Response::ChangeHeader {
            index,
            name: name.into(),
            value: String::new(),
        };
        let insert = |name: &str, value: &str| Response::InsertHeader {
            index: 0,
            name: name.into(),
            value: value.into(),
        };
        assert_eq!(
            edits,
            vec![
                change(1, "X-Ticketgate-Action"),
                change(2, "Authentication-Results"),
                change(2, "x-ticketgate-ticket"),
                change(1, "X-Ticketgate-Ticket"),
                insert("Authentication-Results", "gate; none"),
                insert("X-Ticketgate-Ticket", "PP-2026-1"),
            ]
        );
        assert!(header_edits(&Verdict::pass_through(), &forged).is_empty());
    }

    #[test]
    fn reply_text_keeps_code_and_escapes_percent() {
        let r = Reply::new(451, "4.3.0", "Store 100% full");
        assert_eq!(reply_text(&r), "451 4.3.0 Store 100%% full");
    }
}
