//! `ticketgate try`: the configuration tried on mail from files before it
//! goes live. Reads `.eml` files, Maildir folders and mbox files, asks the
//! desk what `serve` would do with each message (`desk::preview`: no
//! store, no reply, nothing sent) and prints it, with a summary.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ticketgate::config::{Config, ConfigError};
use ticketgate::desk::Loaded;
use ticketgate::desk::preview::{Incoming, Preview, PreviewOutcome, preview};
use ticketgate::outbox::render::{TemplateError, Templates};

/// `ticketgate try` could not read what it was given.
#[derive(Debug, thiserror::Error)]
pub enum TryError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Templates(#[from] TemplateError),
    #[error("cannot write the output: {0}")]
    Output(std::io::Error),
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn read_error(path: &Path) -> impl FnOnce(std::io::Error) -> TryError + '_ {
    move |source| TryError::Read {
        path: path.to_path_buf(),
        source,
    }
}

/// What `try` was asked.
pub struct TryRequest {
    pub config: PathBuf,
    pub paths: Vec<PathBuf>,
    /// The envelope recipients of every message; none: each message's own
    /// (X-Original-To, Delivered-To, else To and Cc).
    pub rcpts: Vec<String>,
    pub json: bool,
}

/// Runs `try`; a reader that stops reading (`| head`) ends it quietly.
pub fn run(req: TryRequest) -> Result<(), TryError> {
    match preview_all(&req) {
        Err(TryError::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        done => done,
    }
}

fn preview_all(req: &TryRequest) -> Result<(), TryError> {
    let config = Config::load(&req.config)?;
    let templates = Templates::load(&config.templates_dir())?;
    let cap = config.limits.max_message_size;
    let loaded = Loaded::new(Arc::new(config), templates);
    let mut summary = Summary::default();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for path in &req.paths {
        for_each_message(path, cap, &mut |source, raw| {
            let raw = crlf(raw);
            let envelope_from = envelope_sender(&raw);
            let rcpts = match req.rcpts.is_empty() {
                true => envelope_recipients(&raw),
                false => req.rcpts.clone(),
            };
            let incoming = Incoming {
                envelope_from: &envelope_from,
                rcpts: &rcpts,
                raw: &raw,
            };
            let p = preview(&loaded, &incoming);
            summary.add(&p);
            print_one(&mut out, &source, &p, req.json).map_err(TryError::Output)
        })?;
    }
    if !req.json {
        summary.print(&mut out).map_err(TryError::Output)?;
    }
    out.flush().map_err(TryError::Output)
}

/// Calls `each` with (where it came from, bytes) for every message under
/// `path`: a Maildir (its `new` and `cur`), a folder of files, an mbox, or
/// one message. A message is read up to one byte past `cap`, which is
/// enough for `serve`'s refusal.
fn for_each_message(
    path: &Path,
    cap: u64,
    each: &mut dyn FnMut(String, Vec<u8>) -> Result<(), TryError>,
) -> Result<(), TryError> {
    if path.is_dir() {
        let maildir = path.join("cur").is_dir() || path.join("new").is_dir();
        let dirs = match maildir {
            true => vec![path.join("new"), path.join("cur")],
            false => vec![path.to_path_buf()],
        };
        for dir in dirs.iter().filter(|d| d.is_dir()) {
            for file in sorted_files(dir)? {
                for_each_in_file(&file, cap, each)?;
            }
        }
        return Ok(());
    }
    for_each_in_file(path, cap, each)
}

fn sorted_files(dir: &Path) -> Result<Vec<PathBuf>, TryError> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(read_error(dir))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    Ok(files)
}

/// One file: an mbox if it starts with a `From ` line, else one message.
fn for_each_in_file(
    path: &Path,
    cap: u64,
    each: &mut dyn FnMut(String, Vec<u8>) -> Result<(), TryError>,
) -> Result<(), TryError> {
    let file = std::fs::File::open(path).map_err(read_error(path))?;
    let mut reader = BufReader::new(file);
    let is_mbox = reader
        .fill_buf()
        .map_err(read_error(path))?
        .starts_with(b"From ");
    if is_mbox {
        return read_mbox(path, reader, cap, each);
    }
    let mut raw = Vec::new();
    reader
        .take(cap.saturating_add(1))
        .read_to_end(&mut raw)
        .map_err(read_error(path))?;
    each(path.display().to_string(), raw)
}

/// An mbox, a message at a time (mboxrd: `>From ` lines lose one `>`); a
/// message past `cap` keeps its first `cap + 1` bytes.
fn read_mbox(
    path: &Path,
    mut reader: impl BufRead,
    cap: u64,
    each: &mut dyn FnMut(String, Vec<u8>) -> Result<(), TryError>,
) -> Result<(), TryError> {
    let (mut line, mut current, mut index) = (Vec::new(), None::<Vec<u8>>, 0usize);
    let cap = usize::try_from(cap.saturating_add(1)).unwrap_or(usize::MAX);
    loop {
        line.clear();
        let n = read_line_within(&mut reader, &mut line, cap).map_err(read_error(path))?;
        if n == 0 || line.starts_with(b"From ") {
            if let Some(message) = current.take() {
                index += 1;
                each(format!("{}#{index}", path.display()), message)?;
            }
            if n == 0 {
                return Ok(());
            }
            current = Some(Vec::new());
            continue;
        }
        let Some(message) = current.as_mut() else {
            continue;
        };
        let unescaped: &[u8] = match is_escaped_from(&line) {
            true => &line[1..],
            false => &line,
        };
        let room = cap.saturating_sub(message.len());
        message.extend_from_slice(&unescaped[..unescaped.len().min(room)]);
    }
}

/// Reads one line (through its LF), keeping at most `max` bytes of it;
/// returns the bytes consumed, 0 at the end.
fn read_line_within(
    reader: &mut impl BufRead,
    line: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<usize> {
    let mut consumed = 0;
    loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            return Ok(consumed);
        }
        let (take, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        let room = max.saturating_sub(line.len());
        line.extend_from_slice(&buf[..take.min(room)]);
        reader.consume(take);
        consumed += take;
        if done {
            return Ok(consumed);
        }
    }
}

fn is_escaped_from(line: &[u8]) -> bool {
    let quoted = line.iter().take_while(|&&b| b == b'>').count();
    quoted > 0 && line[quoted..].starts_with(b"From ")
}

/// Bare LF line ends as CRLF, as the message arrives over SMTP.
fn crlf(raw: Vec<u8>) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 32);
    let mut previous = 0u8;
    for &b in &raw {
        if b == b'\n' && previous != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        previous = b;
    }
    out
}

/// The envelope sender the message was delivered with (Return-Path),
/// else its From.
pub fn envelope_sender(raw: &[u8]) -> String {
    let headers = header_fields(raw);
    let value = headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("return-path"))
        .or_else(|| headers.iter().find(|(n, _)| n.eq_ignore_ascii_case("from")))
        .map(|(_, v)| v.as_str())
        .unwrap_or("");
    addresses(value).into_iter().next().unwrap_or_default()
}

/// The recipients it was delivered to (X-Original-To, Delivered-To),
/// else those of To and Cc.
pub fn envelope_recipients(raw: &[u8]) -> Vec<String> {
    let headers = header_fields(raw);
    let of = |names: &[&str]| -> Vec<String> {
        headers
            .iter()
            .filter(|(n, _)| names.iter().any(|w| n.eq_ignore_ascii_case(w)))
            .flat_map(|(_, v)| addresses(v))
            .collect()
    };
    let delivered = of(&["x-original-to", "delivered-to"]);
    let mut rcpts = match delivered.is_empty() {
        true => of(&["to", "cc"]),
        false => delivered,
    };
    rcpts.dedup();
    rcpts
}

/// The header fields, unfolded: (name, value).
fn header_fields(raw: &[u8]) -> Vec<(String, String)> {
    // The header section only, and at most as much of it as serve reads.
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(raw.len())
        .min(HEADER_BYTES);
    let text = String::from_utf8_lossy(&raw[..end]);
    let mut fields: Vec<(String, String)> = Vec::new();
    for line in text.split("\r\n") {
        if line.is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = fields.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
            continue;
        }
        if let Some((name, value)) = line.split_once(':') {
            fields.push((name.trim().to_string(), value.trim().to_string()));
        }
    }
    fields
}

/// Bytes of a header section looked at for the envelope.
const HEADER_BYTES: usize = 256 * 1024;

/// The addresses of an address-list field value, lowercase.
fn addresses(value: &str) -> Vec<String> {
    value
        .split(',')
        .filter_map(|part| {
            let part = part.trim();
            let addr = match (part.rfind('<'), part.rfind('>')) {
                (Some(open), Some(close)) if open < close => &part[open + 1..close],
                _ => part,
            };
            let addr = addr.trim().trim_matches('"');
            addr.contains('@').then(|| addr.to_lowercase())
        })
        .collect()
}

fn print_one(out: &mut dyn Write, source: &str, p: &Preview, json: bool) -> std::io::Result<()> {
    if json {
        let mut value = serde_json::to_value(p).unwrap_or_default();
        if let Some(object) = value.as_object_mut() {
            object.insert("source".into(), source.into());
        }
        writeln!(out, "{value}")?;
        return Ok(());
    }
    writeln!(out, "{source}")?;
    writeln!(
        out,
        "  {} {:?} from {} to {}",
        p.message_id.as_deref().unwrap_or("(no Message-ID)"),
        p.subject,
        or_dash(&p.envelope_from),
        p.recipients.join(", ")
    )?;
    match p.outcome {
        PreviewOutcome::Pass => {
            writeln!(out, "  passes through untouched (no helpdesk recipient)")?
        }
        PreviewOutcome::Refused => {
            writeln!(out, "  refused: {}", p.refusal.as_deref().unwrap_or(""))?
        }
        PreviewOutcome::Ticket => {
            for t in &p.tickets {
                print_desk(out, t)?;
            }
        }
    }
    Ok(())
}

fn print_desk(
    out: &mut dyn Write,
    t: &ticketgate::desk::preview::DeskPreview,
) -> std::io::Result<()> {
    let opt = |o: &Option<String>| o.clone().unwrap_or_else(|| "-".into());
    let status = t.status.as_str();
    let what = match &t.followup_of {
        Some(id) => format!("follow-up of {id} if it exists, else a new ticket ({status})"),
        None => format!("new ticket, {status}"),
    };
    writeln!(out, "  {} / {}: {what}", t.helpdesk, t.queue)?;
    writeln!(
        out,
        "    procedure {}  sector {}  urgency {}  contract {}",
        opt(&t.procedure),
        opt(&t.sector),
        t.urgency.as_str(),
        opt(&t.contract)
    )?;
    if let Some(command) = t.command {
        let word = match command {
            ticketgate::classify::MailCommand::Close => "close",
            ticketgate::classify::MailCommand::Reopen => "reopen",
        };
        writeln!(
            out,
            "    asks to {word} it: done only if the sender is its authenticated requester"
        )?;
    }
    let new = if t.followup_of.is_some() {
        " (as a new ticket)"
    } else {
        ""
    };
    match (&t.reply_to, t.no_reply) {
        (_, Some(why)) => writeln!(out, "    no automatic reply: {why}")?,
        (Some(to), None) => writeln!(out, "    confirmation to {to}{new}")?,
        (None, None) => {}
    }
    let reasons: Vec<&str> = t.reasons.iter().map(|r| r.as_str()).collect();
    writeln!(out, "    reasons: {}", reasons.join(" "))?;
    Ok(())
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() { "<>" } else { s }
}

/// Counts for the table at the end.
#[derive(Default)]
struct Summary {
    messages: usize,
    passed: usize,
    refused: usize,
    /// (helpdesk, queue) -> [new open, new suspended, follow-ups, no reply]
    desks: BTreeMap<(String, String), [usize; 4]>,
}

impl Summary {
    fn add(&mut self, p: &Preview) {
        self.messages += 1;
        match p.outcome {
            PreviewOutcome::Pass => self.passed += 1,
            PreviewOutcome::Refused => self.refused += 1,
            PreviewOutcome::Ticket => {}
        }
        for t in &p.tickets {
            let row = self
                .desks
                .entry((t.helpdesk.clone(), t.queue.clone()))
                .or_default();
            let column = match (&t.followup_of, t.status) {
                (Some(_), _) => 2,
                (None, ticketgate::ticket::Status::Suspended) => 1,
                (None, _) => 0,
            };
            row[column] += 1;
            row[3] += usize::from(t.no_reply.is_some());
        }
    }

    fn print(&self, out: &mut dyn Write) -> std::io::Result<()> {
        writeln!(out)?;
        writeln!(
            out,
            "{} messages: {} ticketed, {} passed through, {} refused",
            self.messages,
            self.messages - self.passed - self.refused,
            self.passed,
            self.refused
        )?;
        if self.desks.is_empty() {
            return Ok(());
        }
        writeln!(
            out,
            "{:<18} {:<28} {:>5} {:>9} {:>9} {:>8}",
            "helpdesk", "queue", "open", "suspended", "follow-up", "no reply"
        )?;
        for ((desk, queue), [open, suspended, followups, silent]) in &self.desks {
            writeln!(
                out,
                "{desk:<18} {queue:<28} {open:>5} {suspended:>9} {followups:>9} {silent:>8}"
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mbox_splits_on_from_lines_and_unescapes_quoted_ones() {
        let mbox = b"From a@b Mon Jan  1 00:00:00 2026\nSubject: one\n\n>From here\n>>From there\n\nFrom c@d Mon Jan  1 00:00:00 2026\nSubject: two\n\nbody\n";
        let mut got = Vec::new();
        read_mbox(Path::new("m"), &mbox[..], 1 << 20, &mut |s, raw| {
            got.push((s, raw));
            Ok(())
        })
        .unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].0, "m#1");
        assert_eq!(got[0].1, b"Subject: one\n\nFrom here\n>From there\n\n");
        assert_eq!(got[1].1, b"Subject: two\n\nbody\n");
    }

    #[test]
    fn an_mbox_message_past_the_cap_keeps_one_byte_more_than_the_cap() {
        let mut mbox = b"From a@b x\nSubject: big\n\n".to_vec();
        mbox.extend(std::iter::repeat_n(b'x', 100_000));
        mbox.extend_from_slice(b"\nFrom c@d x\nSubject: small\n\nok\n");
        let mut sizes = Vec::new();
        read_mbox(Path::new("m"), &mbox[..], 1000, &mut |_, raw| {
            sizes.push(raw.len());
            Ok(())
        })
        .unwrap();
        assert_eq!(sizes, vec![1001, b"Subject: small\n\nok\n".len()]);
    }

    #[test]
    fn the_envelope_comes_from_the_delivery_fields_first() {
        let raw = b"Return-Path: <Luca@Studio.example>\r\nFrom: Other <x@y.example>\r\nTo: a@b.example,\r\n \"Help\" <nuovocaso@projectpp.it>\r\nDelivered-To: nuovocaso@projectpp.it\r\n\r\nbody\r\n";
        assert_eq!(envelope_sender(raw), "luca@studio.example");
        assert_eq!(envelope_recipients(raw), vec!["nuovocaso@projectpp.it"]);
        let plain = b"From: Other <x@y.example>\r\nTo: a@b.example,\r\n \"Help\" <nuovocaso@projectpp.it>\r\nCc: c@d.example\r\n\r\nbody\r\n";
        assert_eq!(envelope_sender(plain), "x@y.example");
        assert_eq!(
            envelope_recipients(plain),
            vec!["a@b.example", "nuovocaso@projectpp.it", "c@d.example"]
        );
    }

    #[test]
    fn bare_line_feeds_become_crlf_once() {
        assert_eq!(crlf(b"a\nb\r\nc\n".to_vec()), b"a\r\nb\r\nc\r\n");
        assert_eq!(crlf(b"a\r\nb\r\n".to_vec()), b"a\r\nb\r\n");
    }
}
