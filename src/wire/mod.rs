//! What goes over the wire, shared by the front ends and the next hop:
//! SMTP replies, the DATA decoder and dot-stuffer, line I/O with
//! deadlines, and the milter codec. Leaves: nothing here knows about
//! tickets or helpdesks.
pub mod data;
pub mod io;
pub mod milter;
pub mod reply;
