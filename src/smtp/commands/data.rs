//! DATA: receive the message (streamed into a spool), run the pipeline,
//! hand the message to the next hop, and answer our client with the next
//! hop's verdict only once the ticket change is on disk.

use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite};

use crate::desk::pipeline::{self, Verdict};
use crate::envelope::Envelope;
use crate::forward::Outgoing;
use crate::metrics::METRICS;
use crate::outbox::settle::HopVerdict;
use crate::server::Phase;
use crate::smtp::session::{Flow, Session, State, shutting_down};
use crate::spool::Spool;
use crate::wire::data::DataDecoder;
use crate::wire::io::ReadError;
use crate::wire::reply::Reply;

enum DataFailure {
    /// The client is gone; nothing more to say.
    Disconnected,
    /// Say this and close the connection.
    Fatal(Reply),
    /// Say this; the session goes on.
    Rejected(Reply),
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    pub(super) async fn handle_data(&mut self) -> Flow {
        match &self.state {
            State::Transaction(txn) if !txn.rcpts.is_empty() => {}
            State::Transaction(_) => {
                self.reply(Reply::new(554, "5.5.1", "No valid recipients"));
                return Flow::Continue;
            }
            _ => {
                self.reply(Reply::new(503, "5.5.1", "Send MAIL and RCPT first"));
                return Flow::Continue;
            }
        }
        self.reply(Reply {
            code: 354,
            enhanced: String::new(),
            lines: vec!["End data with <CR><LF>.<CR><LF>".into()],
        });
        if self.io.flush().await.is_err() {
            return Flow::Quit;
        }
        let started = Instant::now();
        match self.receive_data().await {
            Ok(spool) => {
                self.deliver(spool, started).await;
                Flow::Continue
            }
            Err(DataFailure::Disconnected) => Flow::Quit,
            Err(DataFailure::Fatal(reply)) => {
                self.reply(reply);
                Flow::Quit
            }
            Err(DataFailure::Rejected(reply)) => {
                self.log_rejected(&reply, started);
                self.abort_transaction().await;
                self.reply_logged(reply);
                Flow::Continue
            }
        }
    }

    async fn receive_data(&mut self) -> Result<Spool, DataFailure> {
        let config = &self.shared.config;
        let mut decoder = DataDecoder::new(config.limits.max_message_size);
        let mut spool = Spool::new(
            &config.server.data_dir.join("spool"),
            config.limits.spool_memory_bytes,
        );
        let mut budget = DataBudget::new(config.limits.data_timeout(), config.limits.min_data_rate);
        let mut decoded = Vec::with_capacity(64 * 1024);
        while !decoder.is_done() {
            let deadline = budget.deadline().min(self.deadline);
            let mut consumed = 0;
            if *self.phase.borrow() == Phase::Closing {
                return Err(DataFailure::Fatal(shutting_down()));
            }
            // A client stalled in DATA must not hold the shutdown past its
            // grace period: the read races the phase change.
            let read = tokio::select! {
                read = self.io.read_chunk(deadline, |bytes| {
                    consumed = decoder.feed(bytes, &mut decoded);
                    consumed
                }) => read,
                changed = self.phase.changed() => match changed {
                    Ok(()) => continue,
                    // The server is gone: nothing will say Closing any more.
                    Err(_) => return Err(DataFailure::Fatal(shutting_down())),
                },
            };
            match read {
                Ok(()) => budget.received(consumed),
                Err(ReadError::Timeout) => {
                    return Err(DataFailure::Fatal(self.timed_out("data")));
                }
                Err(ReadError::Closed | ReadError::Io(_)) => return Err(DataFailure::Disconnected),
            }
            if !decoded.is_empty() {
                spool.write(&decoded).await.map_err(spool_failure)?;
                decoded.clear();
            }
        }
        let flags = decoder.flags();
        if flags.bare_cr || flags.bare_lf {
            return Err(DataFailure::Rejected(Reply::new(
                554,
                "5.6.0",
                "Message contains bare CR or bare LF; lines must end with CRLF",
            )));
        }
        if flags.too_large {
            let max = config.limits.max_message_size;
            return Err(DataFailure::Rejected(Reply::new(
                552,
                "5.3.4",
                format!("Message size exceeds fixed limit of {max} bytes"),
            )));
        }
        spool.finish().await.map_err(spool_failure)?;
        Ok(spool)
    }

    async fn deliver(&mut self, spool: Spool, started: Instant) {
        let State::Transaction(txn) = std::mem::replace(&mut self.state, State::Ready) else {
            return;
        };
        let envelope = Envelope {
            session: &self.id,
            client: &self.client,
            from: &txn.from,
            rcpts: &txn.rcpts,
        };
        let verdict = match self.shared.pipeline.prepare(&envelope, &spool).await {
            Ok(verdict) => verdict,
            Err(refusal) => {
                let reply = refusal.reply();
                self.state = State::Transaction(txn);
                self.log_rejected(&reply, started);
                self.abort_transaction().await;
                self.reply_logged(reply);
                return;
            }
        };
        let reply = self.forward(&verdict, &spool).await;
        let shared = self.shared.clone();
        shared
            .pipeline
            .settle(&verdict, HopVerdict::of(reply.code))
            .await;
        let envelope = Envelope {
            session: &self.id,
            client: &self.client,
            from: &txn.from,
            rcpts: &txn.rcpts,
        };
        pipeline::log_message(
            &envelope,
            spool.len(),
            &verdict.outcome,
            &reply,
            queue_id(&reply),
            started,
        );
        self.reply_logged(reply);
    }

    /// Sends the message on with the verdict's header edits: our fields
    /// on top, the forged ones left out.
    async fn forward(&mut self, verdict: &Verdict, spool: &Spool) -> Reply {
        let head = crate::tag::header_block(&verdict.edits.add);
        let outgoing = Outgoing {
            head: &head,
            cuts: &verdict.edits.remove,
            spool,
        };
        let Some(hop) = self.hop.as_mut() else {
            return Reply::new(451, "4.4.1", "Next hop connection lost, try again later");
        };
        let sent = Instant::now();
        let result = hop.data(&outgoing).await;
        METRICS.next_hop_latency(sent.elapsed());
        match result {
            Ok(reply) => reply,
            Err(e) => {
                tracing::warn!(session = %self.id, error = %e, "next hop failed during DATA");
                // Its state is unknown now: never reuse it.
                self.hop = None;
                e.to_reply()
            }
        }
    }

    fn log_rejected(&self, reply: &Reply, started: Instant) {
        let (from, rcpts) = match &self.state {
            State::Transaction(t) => (t.from.as_str(), t.rcpts.as_slice()),
            _ => ("", &[][..]),
        };
        let envelope = Envelope {
            session: &self.id,
            client: &self.client,
            from,
            rcpts,
        };
        pipeline::log_refused(&envelope, reply, started);
    }
}

/// The time a client has left to finish DATA: a starting budget, less the
/// time each read waited, plus `bytes / min_rate` seconds for what it
/// brought. A client that trickles a byte now and then runs out; one that
/// sends a large message at a fair rate never does.
struct DataBudget {
    deadline: tokio::time::Instant,
    min_rate: u64,
}

impl DataBudget {
    fn new(start: std::time::Duration, min_rate: u64) -> DataBudget {
        DataBudget {
            deadline: tokio::time::Instant::now() + start,
            min_rate: min_rate.max(1),
        }
    }

    fn deadline(&self) -> tokio::time::Instant {
        self.deadline
    }

    fn received(&mut self, bytes: usize) {
        let credit = std::time::Duration::from_secs_f64(bytes as f64 / self.min_rate as f64);
        self.deadline += credit;
    }
}

fn spool_failure(e: std::io::Error) -> DataFailure {
    tracing::error!(error = %e, "cannot write the spool");
    DataFailure::Fatal(Reply::new(
        451,
        "4.3.0",
        "Local error writing the message, try again later",
    ))
}

/// The queue id in a Postfix-style `250 2.0.0 Ok: queued as 4Xk...` reply.
fn queue_id(reply: &Reply) -> Option<&str> {
    let line = reply.lines.last()?;
    let (_, id) = line.split_once("queued as ")?;
    id.split_whitespace().next()
}
