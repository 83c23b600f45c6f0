//! Message-IDs of our replies: they name the ticket and carry an HMAC, so a
//! reply to one of our mails leads to its ticket, and nobody can make up a
//! Message-ID that we would take for ours.

use std::path::Path;

use hmac::{Hmac, Mac};
use sha2::Sha256;

const KEY_FILE: &str = "msgid.key";
const SIG_HEX: usize = 20;

#[derive(Clone)]
pub struct Signer {
    key: Vec<u8>,
    hostname: String,
}

impl Signer {
    /// Loads the key from the data directory, creating it (mode 0600) on
    /// first start.
    pub fn load_or_create(data_dir: &Path, hostname: &str) -> std::io::Result<Signer> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let path = data_dir.join(KEY_FILE);
        let key = match std::fs::read(&path) {
            Ok(key) if key.len() >= 32 => key,
            _ => {
                let key: [u8; 32] = rand::random();
                let tmp = data_dir.join(format!("{KEY_FILE}.tmp"));
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(0o600)
                    .open(&tmp)?;
                f.write_all(&key)?;
                f.sync_all()?;
                std::fs::rename(&tmp, &path)?;
                key.to_vec()
            }
        };
        Ok(Signer {
            key,
            hostname: hostname.to_string(),
        })
    }

    fn sign(&self, text: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("hmac takes any key length");
        mac.update(text.as_bytes());
        hex::encode(mac.finalize().into_bytes())[..SIG_HEX].to_string()
    }

    /// What a bound id signs: its local part and the address it goes to,
    /// so that the id proves nothing for anyone else.
    fn sign_bound(&self, local: &str, to: &str) -> String {
        self.sign(&format!("{local}\n{}", to.to_ascii_lowercase()))
    }

    /// A new Message-ID (without angle brackets) for a reply on `ticket_id`
    /// sent to `to` (a canonical address: the caller strips tags and case).
    pub fn message_id(&self, ticket_id: &str, to: &str) -> String {
        let nonce = hex::encode(rand::random::<[u8; 6]>());
        let local = format!("{BOUND}.{ticket_id}.{nonce}");
        let sig = self.sign_bound(&local, to);
        format!("{local}.{sig}@{}", self.hostname)
    }

    /// The ticket an id of ours names, when its signature holds for `to`,
    /// the address it must have been sent to.
    pub fn verify_for(&self, message_id: &str, to: &str) -> Option<String> {
        let (kind, ticket, signed, sig) = split(message_id)?;
        (kind == BOUND && same(&self.sign_bound(signed, to), sig)).then(|| ticket.to_string())
    }

    /// The ticket an id of ours names, and the address it was signed for
    /// among those `to_of` gives for that ticket (where our replies on it
    /// went). Ids signed before ids were bound to an address lead to their
    /// ticket bound to nobody: they prove nothing about who answers.
    pub fn ticket_of(
        &self,
        message_id: &str,
        to_of: impl FnOnce(&str) -> Vec<String>,
    ) -> Option<Signed> {
        let (kind, ticket, signed, sig) = split(message_id)?;
        let bound_to = match kind {
            UNBOUND if same(&self.sign(signed), sig) => None,
            BOUND => Some(
                to_of(ticket)
                    .into_iter()
                    .find(|to| same(&self.sign_bound(signed, to), sig))?,
            ),
            _ => return None,
        };
        Some(Signed {
            ticket: ticket.to_string(),
            bound_to,
        })
    }
}

/// The ticket an id of our shape names, without checking its signature
/// (for `ticketgate try`, which has no key).
pub fn ticket_named(message_id: &str) -> Option<&str> {
    split(message_id).map(|(_, ticket, _, _)| ticket)
}

/// One of our Message-IDs, verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    pub ticket: String,
    /// The address it was signed for; `None` for an id from before ids
    /// were bound to their recipient.
    pub bound_to: Option<String>,
}

/// Ids bound to their recipient start `tgb.`; `tg.` ids (bound to nothing)
/// were written before.
const BOUND: &str = "tgb";
const UNBOUND: &str = "tg";

/// `(kind, ticket, signed part, signature)` of `<kind.ticket.nonce.sig@host>`.
fn split(message_id: &str) -> Option<(&str, &str, &str, &str)> {
    let id = message_id
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>');
    let (local, _host) = id.rsplit_once('@')?;
    let (signed, sig) = local.rsplit_once('.')?;
    let (kind, rest) = signed.split_once('.')?;
    let (ticket, _nonce) = rest.rsplit_once('.')?;
    Some((kind, ticket, signed, sig))
}

/// Equal-length hex strings compared in constant time (cheap enough).
fn same(expected: &str, sig: &str) -> bool {
    expected.len() == sig.len()
        && expected
            .bytes()
            .zip(sig.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer(dir: &Path) -> Signer {
        Signer::load_or_create(dir, "gate.test").unwrap()
    }

    const MARIO: &str = "mario@cliente.example";

    fn to(list: &[&str]) -> impl FnOnce(&str) -> Vec<String> {
        let list: Vec<String> = list.iter().map(|s| s.to_string()).collect();
        move |_| list
    }

    #[test]
    fn an_id_verifies_for_its_ticket_and_address_only() {
        let dir = tempfile::tempdir().unwrap();
        let s = signer(dir.path());
        let id = s.message_id("PP-2026-000042", MARIO);
        assert_eq!(
            s.verify_for(&format!("<{id}>"), MARIO).as_deref(),
            Some("PP-2026-000042")
        );
        assert_eq!(s.verify_for(&id, "x9@vps.example"), None);
        assert_eq!(
            s.ticket_of(&id, to(&["x9@vps.example", MARIO])),
            Some(Signed {
                ticket: "PP-2026-000042".into(),
                bound_to: Some(MARIO.into())
            })
        );
        assert_eq!(s.ticket_of(&id, to(&["x9@vps.example"])), None);
        // Another ticket's number in the same id breaks the signature.
        let forged = id.replace("000042", "000043");
        assert_eq!(s.verify_for(&forged, MARIO), None);
        assert_eq!(s.ticket_of(&forged, to(&[MARIO])), None);
        // The key survives a restart.
        let again = signer(dir.path());
        assert!(again.verify_for(&id, MARIO).is_some());
    }

    #[test]
    fn ids_from_before_binding_lead_to_their_ticket_bound_to_nobody() {
        let dir = tempfile::tempdir().unwrap();
        let s = signer(dir.path());
        let local = "tg.PP-2026-000007.a1b2c3d4e5f6";
        let old = format!("{local}.{}@gate.test", s.sign(local));
        assert_eq!(
            s.ticket_of(&old, to(&[])),
            Some(Signed {
                ticket: "PP-2026-000007".into(),
                bound_to: None
            })
        );
        assert_eq!(s.verify_for(&old, MARIO), None);
        assert_eq!(s.ticket_of(&old.replace("000007", "000008"), to(&[])), None);
        for junk in [
            "",
            "<>",
            "x@y",
            "tgb.@",
            "tgb.PP.x@h",
            "a.b.c.d",
            "zz.PP.n.s@h",
        ] {
            assert_eq!(s.ticket_of(junk, to(&["a@b"])), None, "{junk}");
        }
    }
}
