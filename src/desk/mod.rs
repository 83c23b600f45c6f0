//! The desk: what the helpdesk does with a message once a front end has
//! it, and with the workgroup's commands.
//!
//! * [`service`]: the shared context (config snapshot, store, outbox,
//!   signer, authenticator) and a workgroup command as one durable change;
//! * [`pipeline`]: a message's stages up to the durable store write, and
//!   its settlement once the next hop answered;
//! * [`transitions`]: what a follow-up or a command does to a ticket,
//!   plain functions that return the replies they want;
//! * [`replies`] and [`suppress`]: drafting those replies, and when none
//!   may be sent (RFC 3834).
pub mod pipeline;
pub mod preview;
pub mod replies;
pub mod service;
pub mod suppress;
pub mod transitions;

pub use pipeline::Pipeline;
pub use service::{CommandError, Loaded, Service};
