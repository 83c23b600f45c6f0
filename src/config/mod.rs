//! Configuration: stage one reads TOML into typed structs (errors name the
//! file, line and key), stage two checks what types cannot (addresses,
//! duplicates, cross references).

mod validate;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;

pub use validate::validate;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("{file}:{line}:{column}: {message}")]
    Syntax {
        file: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{file}: key `{key}`: {message}")]
    Invalid {
        file: PathBuf,
        key: String,
        message: String,
    },
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    #[serde(default)]
    pub limits: LimitsConfig,
    #[serde(default)]
    pub auth: AuthConfig,
    #[serde(default)]
    pub outbox: OutboxConfig,
    #[serde(default)]
    pub metrics: MetricsConfig,
    #[serde(default)]
    pub milter: MilterConfig,
    #[serde(default)]
    pub store: StoreConfig,
    #[serde(default, rename = "helpdesk")]
    pub helpdesks: Vec<HelpdeskConfig>,
    /// Where the file was read from; used to find templates next to it.
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// SMTP listener, e.g. `127.0.0.1:10025`.
    pub listen: SocketAddr,
    /// Name used in our greeting and EHLO to the next hop.
    #[serde(default = "default_hostname")]
    pub hostname: String,
    /// `host:port` of the next SMTP hop, or `maildir:DIR` for a local trial.
    pub next_hop: NextHop,
    /// Where automatic replies go: `ip:port` of an SMTP relay, or
    /// `maildir:DIR` for a local trial.
    #[serde(default)]
    pub reply_relay: Option<ReplyRelay>,
    pub data_dir: PathBuf,
    #[serde(default)]
    pub control: Option<PathBuf>,
    /// Peers allowed to send XFORWARD / XCLIENT.
    #[serde(default = "default_trusted")]
    pub trusted_upstreams: Vec<IpAddr>,
    /// Classify and log only; change nothing in the message or the store.
    #[serde(default)]
    pub shadow: bool,
    /// Like Postfix's `recipient_delimiter`: each char separates a local
    /// part from its extension (`nuovocaso+urgente@` is `nuovocaso@`).
    #[serde(default)]
    pub recipient_delimiter: String,
}

fn default_hostname() -> String {
    "ticketgate.localdomain".to_string()
}

fn default_trusted() -> Vec<IpAddr> {
    vec![IpAddr::from([127, 0, 0, 1])]
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum NextHop {
    Smtp(String),
    Maildir(PathBuf),
}

/// A value the config's types refuse, before `validate` sees the whole.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ValueError {
    #[error("maildir: needs a directory")]
    EmptyMaildir,
    #[error("`{0}` is neither host:port nor maildir:DIR (e.g. 127.0.0.1:10026)")]
    NextHop(String),
    #[error("`{0}` is neither ip:port nor maildir:DIR (e.g. 127.0.0.1:25)")]
    ReplyRelay(String),
    #[error("`{0}`: unix: needs an absolute path")]
    RelativeSocket(String),
    #[error("`{0}` is neither ip:port nor unix:PATH (e.g. 127.0.0.1:8890)")]
    MilterAddr(String),
    #[error("`{0}` is not an address (local@domain)")]
    Address(String),
    #[error("`{procedure}` is not one of this queue's procedures ({known})")]
    UnknownProcedure { procedure: String, known: String },
    #[error("an alias of `{0}` is empty")]
    EmptyAlias(String),
    #[error("`{alias}` would name both `{other}` and `{procedure}`")]
    AmbiguousAlias {
        alias: String,
        other: String,
        procedure: String,
    },
}

impl TryFrom<String> for NextHop {
    type Error = ValueError;
    fn try_from(s: String) -> Result<Self, ValueError> {
        if let Some(dir) = s.strip_prefix("maildir:") {
            if dir.is_empty() {
                return Err(ValueError::EmptyMaildir);
            }
            return Ok(NextHop::Maildir(PathBuf::from(dir)));
        }
        match s.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
                Ok(NextHop::Smtp(s))
            }
            _ => Err(ValueError::NextHop(s)),
        }
    }
}

/// Where automatic replies are delivered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum ReplyRelay {
    Smtp(SocketAddr),
    Maildir(PathBuf),
}

impl TryFrom<String> for ReplyRelay {
    type Error = ValueError;
    fn try_from(s: String) -> Result<Self, ValueError> {
        if let Some(dir) = s.strip_prefix("maildir:") {
            if dir.is_empty() {
                return Err(ValueError::EmptyMaildir);
            }
            return Ok(ReplyRelay::Maildir(PathBuf::from(dir)));
        }
        s.parse()
            .map(ReplyRelay::Smtp)
            .map_err(|_| ValueError::ReplyRelay(s))
    }
}

impl From<ReplyRelay> for String {
    fn from(r: ReplyRelay) -> String {
        r.to_string()
    }
}

impl std::fmt::Display for ReplyRelay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReplyRelay::Smtp(a) => write!(f, "{a}"),
            ReplyRelay::Maildir(d) => write!(f, "maildir:{}", d.display()),
        }
    }
}

impl From<NextHop> for String {
    fn from(h: NextHop) -> String {
        h.to_string()
    }
}

impl std::fmt::Display for NextHop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NextHop::Smtp(a) => f.write_str(a),
            NextHop::Maildir(d) => write!(f, "maildir:{}", d.display()),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    pub max_message_size: u64,
    pub max_recipients: usize,
    pub max_connections: usize,
    /// Wait for one command line.
    pub command_timeout_secs: u64,
    /// DATA's starting budget; each chunk received adds
    /// `bytes / min_data_rate` seconds to it, each wait takes its time off
    /// (Postfix's smtpd_per_request_deadline with smtpd_min_data_rate).
    pub data_timeout_secs: u64,
    /// Bytes per second a client must keep up in DATA.
    pub min_data_rate: u64,
    /// Whole-session ceiling, whatever the client does.
    pub session_timeout_secs: u64,
    /// Connect and each reply of the next hop.
    pub next_hop_timeout_secs: u64,
    /// Time running sessions get after SIGTERM before `421`.
    pub shutdown_grace_secs: u64,
    /// Messages larger than this are spooled to disk.
    pub spool_memory_bytes: usize,
    /// Messages larger than this are forwarded but not parsed for a ticket.
    pub max_parse_bytes: usize,
    /// Bytes of messages being parsed at one time (a parse takes about
    /// two to three times its size in memory); others wait their turn, and
    /// one that waits longer than `data_timeout_secs` gets `451`. At least
    /// `max_parse_bytes`.
    pub parse_memory_bytes: usize,
    /// MIME parts looked at in one message (bodies and attachments).
    pub max_mime_parts: usize,
    /// Attachments of one message kept with the ticket.
    pub max_attachments_per_message: usize,
    /// Header fields of one message looked at.
    pub max_header_fields: usize,
    /// Ids kept from References and In-Reply-To.
    pub max_reference_ids: usize,
    /// Decoded text of one message (subject excluded) the classifier reads.
    pub max_classify_bytes: usize,
    /// Messages and attachments one ticket keeps; later ones are logged
    /// on the ticket's history only.
    pub max_messages_per_ticket: usize,
    pub max_attachments_per_ticket: usize,
    /// Share of `max_connections` in use above which idle clients get
    /// `stress_idle_timeout_secs` instead of `command_timeout_secs`, and a
    /// new client at the limit takes the slot of the longest idle one
    /// (Postfix's stress mode).
    pub stress_threshold_percent: u8,
    pub stress_idle_timeout_secs: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_message_size: 64 * 1024 * 1024,
            max_recipients: 100,
            max_connections: 200,
            command_timeout_secs: 300,
            data_timeout_secs: 180,
            min_data_rate: 500,
            session_timeout_secs: 1800,
            next_hop_timeout_secs: 120,
            shutdown_grace_secs: 30,
            spool_memory_bytes: 1024 * 1024,
            max_parse_bytes: 32 * 1024 * 1024,
            parse_memory_bytes: 48 * 1024 * 1024,
            max_mime_parts: 1000,
            max_attachments_per_message: 100,
            max_header_fields: 1000,
            max_reference_ids: 100,
            max_classify_bytes: 64 * 1024,
            max_messages_per_ticket: 1000,
            max_attachments_per_ticket: 1000,
            stress_threshold_percent: 70,
            stress_idle_timeout_secs: 10,
        }
    }
}

impl LimitsConfig {
    pub fn command_timeout(&self) -> Duration {
        Duration::from_secs(self.command_timeout_secs)
    }
    pub fn data_timeout(&self) -> Duration {
        Duration::from_secs(self.data_timeout_secs)
    }
    pub fn session_timeout(&self) -> Duration {
        Duration::from_secs(self.session_timeout_secs)
    }
    pub fn next_hop_timeout(&self) -> Duration {
        Duration::from_secs(self.next_hop_timeout_secs)
    }
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_secs)
    }
    pub fn stress_idle_timeout(&self) -> Duration {
        Duration::from_secs(self.stress_idle_timeout_secs)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum DnsMode {
    System,
    #[default]
    Off,
}

#[derive(Debug, Clone, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// `system`: check SPF, DKIM and DMARC with DNS lookups; `off`: check
    /// nothing (every result is `none`).
    pub dns: DnsMode,
    /// Bound on all the DNS work for one message (SPF, DKIM and DMARC
    /// together); when it runs out the results are `temperror`.
    /// Default [`AuthConfig::DEFAULT_DNS_TIMEOUT_SECS`].
    pub dns_timeout_secs: Option<u64>,
    /// With `dns = "system"`: the resolvers to ask, as socket addresses
    /// (e.g. `nameservers = ["127.0.0.1:53"]`), instead of those in
    /// /etc/resolv.conf. Queried over UDP, TCP on truncation. Useful for a
    /// local caching resolver; the tests point it at a DNS server they run
    /// on 127.0.0.1. Empty (the default): /etc/resolv.conf.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<SocketAddr>,
}

impl AuthConfig {
    pub const DEFAULT_DNS_TIMEOUT_SECS: u64 = 5;

    pub fn dns_timeout(&self) -> Duration {
        Duration::from_secs(
            self.dns_timeout_secs
                .unwrap_or(Self::DEFAULT_DNS_TIMEOUT_SECS),
        )
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Prometheus endpoint (`GET /metrics`), e.g. `127.0.0.1:9325`; off
    /// when absent.
    pub listen: Option<SocketAddr>,
    /// Log a `counters` event this often (0: only on SIGUSR1).
    pub log_interval_secs: u64,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            listen: None,
            log_interval_secs: 300,
        }
    }
}

/// The milter listener (Postfix `smtpd_milters`), beside or instead of the
/// SMTP listener.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MilterConfig {
    /// `127.0.0.1:8890` or `unix:/run/ticketgate/milter.sock`; off when
    /// absent.
    pub listen: Option<MilterAddr>,
    /// Serve the milter only: no SMTP listener, the next hop is not used.
    pub only: bool,
    /// Wait for each packet from the MTA. Postfix keeps a milter
    /// connection for a whole SMTP session, idle while its client is, so
    /// this is longer than Postfix's own smtpd_timeout (300 s).
    pub read_timeout_secs: u64,
    /// Largest packet accepted from the MTA; a larger one closes the
    /// connection (Postfix then applies milter_default_action). Body
    /// chunks are at most 64 KiB; this bounds a header.
    pub max_packet_bytes: usize,
}

impl Default for MilterConfig {
    fn default() -> Self {
        MilterConfig {
            listen: None,
            only: false,
            read_timeout_secs: 600,
            max_packet_bytes: 1024 * 1024,
        }
    }
}

impl MilterConfig {
    pub fn read_timeout(&self) -> Duration {
        Duration::from_secs(self.read_timeout_secs)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum MilterAddr {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl TryFrom<String> for MilterAddr {
    type Error = ValueError;
    fn try_from(s: String) -> Result<Self, ValueError> {
        if let Some(path) = s.strip_prefix("unix:") {
            if !path.starts_with('/') {
                return Err(ValueError::RelativeSocket(s));
            }
            return Ok(MilterAddr::Unix(PathBuf::from(path)));
        }
        let tcp = s.strip_prefix("inet:").unwrap_or(&s);
        match tcp.parse() {
            Ok(addr) => Ok(MilterAddr::Tcp(addr)),
            Err(_) => Err(ValueError::MilterAddr(s)),
        }
    }
}

impl From<MilterAddr> for String {
    fn from(a: MilterAddr) -> String {
        a.to_string()
    }
}

impl std::fmt::Display for MilterAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MilterAddr::Tcp(a) => write!(f, "{a}"),
            MilterAddr::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboxConfig {
    /// Replies per sender address per hour.
    pub rate_limit_per_hour: u32,
    pub retry_initial_secs: u64,
    pub retry_max_secs: u64,
    pub max_attempts: u32,
    /// Directory of reply templates, relative to the config file.
    pub templates_dir: Option<PathBuf>,
    /// How long a message may go without the next hop's 250 (a 4xx and no
    /// retry, or a crash before the answer was recorded) before its held
    /// replies are cancelled and a ticket it alone opened becomes void.
    pub settle_horizon_secs: u64,
    /// How often the sweep looks for such messages.
    pub sweep_interval_secs: u64,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        OutboxConfig {
            rate_limit_per_hour: 20,
            retry_initial_secs: 30,
            retry_max_secs: 3600,
            max_attempts: 20,
            templates_dir: None,
            settle_horizon_secs: 3600,
            sweep_interval_secs: 60,
        }
    }
}

/// The ticket store's housekeeping.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Raw messages and attachments (blobs) are kept this long, and never
    /// removed while a ticket that refers to them has been active within
    /// that time.
    pub retention_days: u32,
    /// How often the retention sweep runs.
    pub retention_sweep_hours: u32,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            retention_days: 400,
            retention_sweep_hours: 24,
        }
    }
}

impl StoreConfig {
    pub fn retention(&self) -> Duration {
        Duration::from_secs(u64::from(self.retention_days) * 86_400)
    }
}

/// One helpdesk: its queues (addresses) and the rules that classify its mail.
/// Everything about the seed helpdesks lives in the config, not in code.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HelpdeskConfig {
    /// Display name, e.g. "Project++"; shown in tags and replies.
    pub name: String,
    /// Ticket id prefix, e.g. "PP" gives PP-2026-000042.
    pub ticket_prefix: String,
    /// Sender of our replies.
    pub reply_from: String,
    /// Domains whose other addresses are staff: mail to them opens nothing.
    #[serde(default)]
    pub staff_domains: Vec<String>,
    /// Sector when no rule and no queue sets one.
    #[serde(default)]
    pub default_sector: Option<String>,
    /// "What happens next" in the creation confirmation; `{sector}` is
    /// replaced by the ticket's sector.
    #[serde(default)]
    pub next_steps: Option<String>,
    #[serde(default, rename = "queue")]
    pub queues: Vec<QueueConfig>,
    #[serde(default)]
    pub rules: RulesConfig,
    /// Severity levels the workgroup may set, with resolution times.
    #[serde(default, rename = "severity")]
    pub severities: Vec<SeverityConfig>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    pub address: String,
    /// Queue name; defaults to the address's local part.
    #[serde(default)]
    pub name: Option<String>,
    /// Procedures that share this address, told apart by name in the mail.
    #[serde(default)]
    pub procedures: Vec<String>,
    /// Short names a procedure is also known by, matched as words like its
    /// name: `aliases = { "ANF-AUU" = ["ANF", "AUU"] }`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub aliases: BTreeMap<String, Vec<String>>,
    /// A sector address opens its cases in this sector directly.
    #[serde(default)]
    pub sector: Option<String>,
    /// Keyword rules (sector keywords) apply only on queues with this set.
    #[serde(default)]
    pub apply_sector_rules: bool,
}

impl QueueConfig {
    pub fn queue_name(&self) -> &str {
        self.name
            .as_deref()
            .unwrap_or_else(|| self.address.split('@').next().unwrap_or(&self.address))
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RulesConfig {
    /// Word-prefix keywords that set the sector, e.g. mago -> gestionale.
    pub sector_keywords: Vec<SectorKeyword>,
    /// Subject words that set the urgency; later entries win over earlier.
    pub urgency_keywords: Vec<UrgencyKeyword>,
    /// Subject words that close the referenced case.
    pub close_words: Vec<String>,
    /// Subject words that reopen the referenced case.
    pub reopen_words: Vec<String>,
    /// Label of the contract line in the body, e.g. "Contratto".
    pub contract_label: Option<String>,
    /// Quality check: subjects that say nothing about the problem.
    pub vague_subjects: Vec<String>,
    /// Quality check: fewer characters of new body text than this is too short.
    pub min_body_chars: Option<usize>,
    /// Quality check: what the confirmation of a suspended case asks for.
    pub quality_message: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SectorKeyword {
    /// Matches a word starting with this prefix (mago: Mago4, Mago.net).
    pub prefix: String,
    pub sector: String,
    /// Where to look.
    #[serde(default = "both_places")]
    pub r#in: Vec<Place>,
}

fn both_places() -> Vec<Place> {
    vec![Place::Subject, Place::Body]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Place {
    Subject,
    Body,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UrgencyKeyword {
    pub word: String,
    pub urgency: crate::ticket::Urgency,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SeverityConfig {
    pub level: String,
    pub resolution_hours: u64,
}

impl Config {
    /// Reads and checks a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: path.to_path_buf(),
            source,
        })?;
        let mut config = Config::parse(path, &text)?;
        config.source = Some(path.to_path_buf());
        validate(path, &config)?;
        Ok(config)
    }

    /// Stage one: TOML into types; a syntax or type error names line and key.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        toml::from_str::<Config>(text).map_err(|e| {
            let (line, column) = e.span().map(|s| line_col(text, s.start)).unwrap_or((0, 0));
            ConfigError::Syntax {
                file: path.to_path_buf(),
                line,
                column,
                message: e.message().to_string(),
            }
        })
    }

    /// Directory holding reply templates.
    pub fn templates_dir(&self) -> PathBuf {
        let base = self
            .source
            .as_ref()
            .and_then(|p| p.parent())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        match &self.outbox.templates_dir {
            Some(d) if d.is_absolute() => d.clone(),
            Some(d) => base.join(d),
            None => base.join("templates"),
        }
    }

    pub fn control_path(&self) -> PathBuf {
        self.server
            .control
            .clone()
            .unwrap_or_else(|| self.server.data_dir.join("control.sock"))
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
    (line, column)
}

/// A queue shared by three procedures, with the aliases given: the tests
/// of validation and of classification read the same one.
#[cfg(test)]
pub(crate) fn patronato_queue(aliases: &[(&str, &[&str])]) -> QueueConfig {
    QueueConfig {
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
