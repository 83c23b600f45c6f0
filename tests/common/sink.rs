//! The next hop: an SMTP sink on 127.0.0.1 that records each message it
//! accepts (envelope, unstuffed content, XFORWARD lines) and answers as its
//! [`SinkBehaviour`] says, so a test can see what ticketgate forwarded and
//! how it copes with a next hop that refuses, stalls or hangs up.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// A message as the sink received it: envelope and unstuffed content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub from: String,
    pub rcpts: Vec<String>,
    pub data: Vec<u8>,
    pub xforward: Vec<String>,
    /// The MAIL and RCPT command lines exactly as the sink read them
    /// (without CRLF).
    pub mail_line: String,
    pub rcpt_lines: Vec<String>,
}

/// How the sink answers.
#[derive(Debug, Clone, Default)]
pub struct SinkBehaviour {
    /// RCPT to an address containing the key gets this reply line.
    pub rcpt_replies: Vec<(String, String)>,
    /// Reply after the end of data instead of 250.
    pub data_reply: Option<String>,
    /// Reply to DATA instead of 354.
    pub data_command_reply: Option<String>,
    /// Close the connection after this many bytes of data.
    pub close_mid_data_after: Option<usize>,
    /// Wait this long before answering the end of data.
    pub data_delay: Option<Duration>,
    pub advertise_xforward: bool,
    pub advertise_dsn: bool,
}

#[derive(Clone)]
pub struct Sink {
    pub addr: SocketAddr,
    pub received: Arc<Mutex<Vec<Received>>>,
    pub behaviour: Arc<Mutex<SinkBehaviour>>,
}

impl Sink {
    pub async fn start(behaviour: SinkBehaviour) -> Sink {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Sink::serve(listener, behaviour).await
    }

    /// A sink on a listener the test bound itself (e.g. a fixed port).
    pub async fn serve(listener: TcpListener, behaviour: SinkBehaviour) -> Sink {
        let sink = Sink {
            addr: listener.local_addr().unwrap(),
            received: Arc::default(),
            behaviour: Arc::new(Mutex::new(behaviour)),
        };
        let s = sink.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let s = s.clone();
                tokio::spawn(async move {
                    let _ = s.session(stream).await;
                });
            }
        });
        sink
    }

    pub fn messages(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    async fn session(&self, stream: TcpStream) -> std::io::Result<()> {
        let (r, mut w) = stream.into_split();
        let mut r = BufReader::new(r);
        w.write_all(b"220 sink ESMTP\r\n").await?;
        let mut from = String::new();
        let mut rcpts = Vec::new();
        let mut xforward = Vec::new();
        let mut mail_line = String::new();
        let mut rcpt_lines = Vec::new();
        loop {
            let mut line = String::new();
            if r.read_line(&mut line).await? == 0 {
                return Ok(());
            }
            let upper = line.to_ascii_uppercase();
            let b = self.behaviour.lock().unwrap().clone();
            if upper.starts_with("EHLO") {
                let mut caps =
                    "250-sink\r\n250-PIPELINING\r\n250-SIZE 100000000\r\n250-8BITMIME\r\n"
                        .to_string();
                if b.advertise_xforward {
                    caps.push_str("250-XFORWARD NAME ADDR PROTO HELO\r\n");
                }
                if b.advertise_dsn {
                    caps.push_str("250-DSN\r\n");
                }
                caps.push_str("250 ENHANCEDSTATUSCODES\r\n");
                w.write_all(caps.as_bytes()).await?;
            } else if upper.starts_with("XFORWARD") {
                xforward.push(line.trim_end().to_string());
                w.write_all(b"250 2.0.0 Ok\r\n").await?;
            } else if upper.starts_with("MAIL FROM:") {
                from = addr_of(&line);
                mail_line = line.trim_end().to_string();
                rcpts.clear();
                rcpt_lines.clear();
                w.write_all(b"250 2.1.0 Ok\r\n").await?;
            } else if upper.starts_with("RCPT TO:") {
                let to = addr_of(&line);
                let custom = b.rcpt_replies.iter().find(|(k, _)| to.contains(k.as_str()));
                match custom {
                    Some((_, reply)) => w.write_all(format!("{reply}\r\n").as_bytes()).await?,
                    None => {
                        rcpts.push(to);
                        rcpt_lines.push(line.trim_end().to_string());
                        w.write_all(b"250 2.1.5 Ok\r\n").await?
                    }
                }
            } else if upper.starts_with("DATA") {
                if let Some(reply) = &b.data_command_reply {
                    w.write_all(format!("{reply}\r\n").as_bytes()).await?;
                    continue;
                }
                w.write_all(b"354 go ahead\r\n").await?;
                let mut data = Vec::new();
                let mut seen = 0usize;
                loop {
                    let mut l = Vec::new();
                    if r.read_until(b'\n', &mut l).await? == 0 {
                        return Ok(());
                    }
                    seen += l.len();
                    if let Some(limit) = b.close_mid_data_after
                        && seen > limit
                    {
                        return Ok(());
                    }
                    if l == b".\r\n" {
                        break;
                    }
                    if l.starts_with(b".") {
                        l.remove(0);
                    }
                    data.extend_from_slice(&l);
                }
                if let Some(d) = b.data_delay {
                    tokio::time::sleep(d).await;
                }
                match &b.data_reply {
                    Some(reply) => w.write_all(format!("{reply}\r\n").as_bytes()).await?,
                    None => {
                        self.received.lock().unwrap().push(Received {
                            from: from.clone(),
                            rcpts: rcpts.clone(),
                            data,
                            xforward: xforward.clone(),
                            mail_line: mail_line.clone(),
                            rcpt_lines: rcpt_lines.clone(),
                        });
                        w.write_all(b"250 2.0.0 Ok: queued as SINK1\r\n").await?
                    }
                }
            } else if upper.starts_with("RSET") {
                rcpts.clear();
                rcpt_lines.clear();
                w.write_all(b"250 2.0.0 Ok\r\n").await?;
            } else if upper.starts_with("QUIT") {
                w.write_all(b"221 2.0.0 Bye\r\n").await?;
                return Ok(());
            } else {
                w.write_all(b"502 5.5.1 what\r\n").await?;
            }
        }
    }
}

fn addr_of(line: &str) -> String {
    let start = line.find('<').map(|i| i + 1).unwrap_or(0);
    let end = line.find('>').unwrap_or(line.len());
    line[start..end].to_string()
}
