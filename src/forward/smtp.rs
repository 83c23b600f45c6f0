//! A small SMTP client for the next hop. Every read has a timeout and a
//! size limit; replies are relayed to our client with their own text.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::{HopError, MailParams, Outgoing, RcptParams};
use crate::envelope::ClientInfo;
use crate::envelope::{DsnRet, smtp_path, xtext};
use crate::wire::data::DotStuffer;
use crate::wire::reply::Reply;

const MAX_REPLY_LINE: usize = 4096;
const MAX_REPLY_LINES: usize = 64;

#[derive(Debug, Default, Clone)]
struct Capabilities {
    pipelining: bool,
    size: bool,
    eight_bit: bool,
    smtputf8: bool,
    dsn: bool,
    xforward: Vec<String>,
}

pub struct SmtpHop {
    stream: BufReader<TcpStream>,
    caps: Capabilities,
    timeout: Duration,
}

impl SmtpHop {
    pub async fn connect(addr: &str, helo: &str, timeout: Duration) -> Result<SmtpHop, HopError> {
        let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| HopError::Timeout)?
            .map_err(|e| HopError::Unreachable {
                addr: addr.to_string(),
                reason: e.to_string(),
            })?;
        let _ = stream.set_nodelay(true);
        let mut hop = SmtpHop {
            stream: BufReader::new(stream),
            caps: Capabilities::default(),
            timeout,
        };
        let greeting = hop.read_reply().await?;
        if greeting.code != 220 {
            return Err(HopError::Unreachable {
                addr: addr.to_string(),
                reason: greeting.summary(),
            });
        }
        crate::metrics::METRICS.next_hop_seen();
        hop.ehlo(helo).await?;
        Ok(hop)
    }

    async fn ehlo(&mut self, helo: &str) -> Result<(), HopError> {
        let reply = self.command(&format!("EHLO {helo}\r\n")).await?;
        if reply.code == 250 {
            self.caps = parse_capabilities(&reply.lines);
            return Ok(());
        }
        let reply = self.command(&format!("HELO {helo}\r\n")).await?;
        if reply.code != 250 {
            return Err(HopError::Protocol(format!(
                "HELO refused: {}",
                reply.summary()
            )));
        }
        Ok(())
    }

    /// Sends what the next hop announced it accepts; a refusal is logged
    /// and otherwise ignored, the mail still goes through.
    pub async fn xforward(&mut self, info: &ClientInfo) -> Result<(), HopError> {
        if self.caps.xforward.is_empty() {
            return Ok(());
        }
        let mut attrs = Vec::new();
        for (name, value) in [
            ("NAME", &info.name),
            ("ADDR", &info.addr),
            ("PORT", &info.port),
            ("PROTO", &info.proto),
            ("HELO", &info.helo),
            ("IDENT", &info.ident),
            ("SOURCE", &info.source),
        ] {
            if let Some(v) = value
                && self.caps.xforward.iter().any(|a| a == name)
            {
                attrs.push(format!("{name}={}", xtext(v)));
            }
        }
        if attrs.is_empty() {
            return Ok(());
        }
        let reply = self
            .command(&format!("XFORWARD {}\r\n", attrs.join(" ")))
            .await?;
        if reply.code != 250 {
            tracing::warn!(reply = %reply.summary(), "next hop refused XFORWARD");
        }
        Ok(())
    }

    pub fn offers_dsn(&self) -> bool {
        self.caps.dsn
    }

    pub async fn mail(&mut self, from: &str, params: &MailParams) -> Result<Reply, HopError> {
        let cmd = mail_command(from, params, &self.caps)?;
        self.command(&cmd).await
    }

    pub async fn rcpt(&mut self, to: &str, params: &RcptParams) -> Result<Reply, HopError> {
        let cmd = rcpt_command(to, params, &self.caps)?;
        self.command(&cmd).await
    }

    pub async fn rset(&mut self) -> Result<Reply, HopError> {
        self.command("RSET\r\n").await
    }

    pub async fn data(&mut self, msg: &Outgoing<'_>) -> Result<Reply, HopError> {
        let go_ahead = self.command("DATA\r\n").await?;
        if go_ahead.code != 354 {
            return Ok(go_ahead);
        }
        let mut stuffer = DotStuffer::default();
        let mut wire = Vec::with_capacity(70 * 1024);
        let mut chunk = Vec::with_capacity(64 * 1024);
        let mut reader = msg.reader().await?;
        while reader.next_chunk(&mut chunk).await? > 0 {
            wire.clear();
            stuffer.stuff(&chunk, &mut wire);
            write_with_timeout(&mut self.stream, &wire, self.timeout).await?;
        }
        write_with_timeout(&mut self.stream, stuffer.finish(), self.timeout).await?;
        self.stream.get_mut().flush().await?;
        self.read_reply().await
    }

    pub async fn quit(mut self) {
        let _ = self.command("QUIT\r\n").await;
    }

    async fn command(&mut self, line: &str) -> Result<Reply, HopError> {
        write_with_timeout(&mut self.stream, line.as_bytes(), self.timeout).await?;
        self.read_reply().await
    }

    async fn read_reply(&mut self) -> Result<Reply, HopError> {
        let mut lines = Vec::new();
        loop {
            let line = self.read_line().await?;
            if line.len() < 3 || !line.as_bytes()[..3].iter().all(u8::is_ascii_digit) {
                return Err(HopError::Protocol(line));
            }
            let code: u16 = line[..3]
                .parse()
                .map_err(|_| HopError::Protocol(line.clone()))?;
            let more = line.as_bytes().get(3) == Some(&b'-');
            lines.push(line.get(4..).unwrap_or("").to_string());
            if !more {
                return Ok(Reply::from_next_hop(code, &lines));
            }
            if lines.len() >= MAX_REPLY_LINES {
                return Err(HopError::Protocol("reply too long".into()));
            }
        }
    }

    async fn read_line(&mut self) -> Result<String, HopError> {
        let mut buf = Vec::new();
        let limited = (&mut self.stream).take(MAX_REPLY_LINE as u64);
        let mut limited = limited;
        let n = tokio::time::timeout(self.timeout, limited.read_until(b'\n', &mut buf))
            .await
            .map_err(|_| HopError::Timeout)??;
        if n == 0 {
            return Err(HopError::Closed);
        }
        if buf.last() != Some(&b'\n') {
            return Err(HopError::Protocol("reply line too long".into()));
        }
        while matches!(buf.last(), Some(b'\n' | b'\r')) {
            buf.pop();
        }
        Ok(String::from_utf8_lossy(&buf).into_owned())
    }
}

use tokio::io::AsyncReadExt as _;

async fn write_with_timeout(
    stream: &mut BufReader<TcpStream>,
    bytes: &[u8],
    timeout: Duration,
) -> std::io::Result<()> {
    match tokio::time::timeout(timeout, stream.get_mut().write_all(bytes)).await {
        Ok(r) => r,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "write to next hop timed out",
        )),
    }
}

fn parse_capabilities(lines: &[String]) -> Capabilities {
    let mut caps = Capabilities::default();
    for line in lines.iter().skip(1) {
        let mut words = line.split_whitespace();
        let Some(keyword) = words.next() else {
            continue;
        };
        match keyword.to_ascii_uppercase().as_str() {
            "PIPELINING" => caps.pipelining = true,
            "SIZE" => caps.size = true,
            "8BITMIME" => caps.eight_bit = true,
            "SMTPUTF8" => caps.smtputf8 = true,
            "DSN" => caps.dsn = true,
            "XFORWARD" => caps.xforward = words.map(|w| w.to_ascii_uppercase()).collect(),
            _ => {}
        }
    }
    caps
}

/// `MAIL FROM:<path> params`: the parameters our client gave that the next
/// hop announced it takes.
fn mail_command(from: &str, params: &MailParams, caps: &Capabilities) -> Result<String, HopError> {
    let mut cmd = format!("MAIL FROM:<{}>", smtp_path(from)?);
    if let (Some(size), true) = (params.size, caps.size) {
        cmd.push_str(&format!(" SIZE={size}"));
    }
    if params.eight_bit && caps.eight_bit {
        cmd.push_str(" BODY=8BITMIME");
    }
    if params.smtputf8 && caps.smtputf8 {
        cmd.push_str(" SMTPUTF8");
    }
    if caps.dsn {
        match params.ret {
            Some(DsnRet::Full) => cmd.push_str(" RET=FULL"),
            Some(DsnRet::Hdrs) => cmd.push_str(" RET=HDRS"),
            None => {}
        }
        if let Some(envid) = &params.envid {
            cmd.push_str(&format!(" ENVID={}", xtext(envid)));
        }
    }
    cmd.push_str("\r\n");
    Ok(cmd)
}

fn rcpt_command(to: &str, params: &RcptParams, caps: &Capabilities) -> Result<String, HopError> {
    let mut cmd = format!("RCPT TO:<{}>", smtp_path(to)?);
    if caps.dsn {
        if !params.notify.is_empty() {
            cmd.push_str(&format!(" NOTIFY={}", params.notify.join(",")));
        }
        if let Some(orcpt) = &params.orcpt {
            cmd.push_str(&format!(" ORCPT=rfc822;{}", xtext(orcpt)));
        }
    }
    cmd.push_str("\r\n");
    Ok(cmd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_are_read_from_ehlo() {
        let lines: Vec<String> = [
            "mx",
            "PIPELINING",
            "SIZE 1000",
            "8BITMIME",
            "XFORWARD NAME ADDR HELO",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let caps = parse_capabilities(&lines);
        assert!(caps.pipelining && caps.size && caps.eight_bit && !caps.smtputf8);
        assert_eq!(caps.xforward, vec!["NAME", "ADDR", "HELO"]);
    }

    #[test]
    fn envelope_commands_quote_and_pass_dsn_when_offered() {
        let dsn = Capabilities {
            dsn: true,
            size: true,
            ..Capabilities::default()
        };
        let params = RcptParams {
            notify: vec!["SUCCESS", "FAILURE"],
            orcpt: Some("a b@x.it".into()),
        };
        assert_eq!(
            rcpt_command("x> NOTIFY=NEVER@example.org", &params, &dsn).unwrap(),
            "RCPT TO:<\"x> NOTIFY=NEVER\"@example.org> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a+20b@x.it\r\n"
        );
        assert_eq!(
            rcpt_command("a@x.it", &params, &Capabilities::default()).unwrap(),
            "RCPT TO:<a@x.it>\r\n"
        );
        let mail = MailParams {
            size: Some(10),
            ret: Some(DsnRet::Hdrs),
            envid: Some("id=1".into()),
            ..MailParams::default()
        };
        assert_eq!(
            mail_command("", &mail, &dsn).unwrap(),
            "MAIL FROM:<> SIZE=10 RET=HDRS ENVID=id+3D1\r\n"
        );
    }
}
