//! The SMTP server side: session state, command handlers, DATA framing.
pub mod commands;
pub mod data;
pub mod io;
pub mod reply;
pub mod session;

pub use session::Session;
