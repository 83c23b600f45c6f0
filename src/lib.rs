//! ticketgate: an SMTP filter that recognises helpdesk mail in flight,
//! opens or updates a ticket, tags the message and forwards it.
//!
//! The modules follow the pipeline:
//! smtp (session) -> parse -> auth -> route -> classify -> store -> tag ->
//! forward -> outbox; `pipeline` strings the middle stages together.
pub mod app;
pub mod auth;
pub mod classify;
pub mod config;
pub mod control;
pub mod desk;
pub mod envelope;
pub mod forward;
pub mod logging;
pub mod metrics;
pub mod milter;
pub mod outbox;
pub mod parse;
pub mod reason;
pub mod route;
pub mod server;
pub mod smtp;
pub mod spool;
pub mod store;
pub mod tag;
pub mod ticket;
pub mod wire;
