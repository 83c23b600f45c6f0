//! The SMTP server side: session state, command handlers, DATA framing.
pub mod commands;
pub mod session;

pub use session::Session;
