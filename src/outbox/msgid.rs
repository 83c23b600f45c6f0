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

    /// A new Message-ID (without angle brackets) for a reply on `ticket_id`.
    pub fn message_id(&self, ticket_id: &str) -> String {
        let nonce = hex::encode(rand::random::<[u8; 6]>());
        let local = format!("tg.{ticket_id}.{nonce}");
        let sig = self.sign(&local);
        format!("{local}.{sig}@{}", self.hostname)
    }

    /// The ticket id in one of our Message-IDs, if the signature holds.
    pub fn verify(&self, message_id: &str) -> Option<String> {
        let id = message_id
            .trim()
            .trim_start_matches('<')
            .trim_end_matches('>');
        let (local, _host) = id.rsplit_once('@')?;
        let (signed, sig) = local.rsplit_once('.')?;
        let rest = signed.strip_prefix("tg.")?;
        let (ticket, _nonce) = rest.rsplit_once('.')?;
        let expected = self.sign(signed);
        // Equal-length hex strings; constant-time compare is cheap enough.
        let same = expected.len() == sig.len()
            && expected
                .bytes()
                .zip(sig.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        same.then(|| ticket.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_ids_verify_and_forged_ones_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let s = Signer::load_or_create(dir.path(), "gate.test").unwrap();
        let id = s.message_id("PP-2026-000042");
        assert_eq!(
            s.verify(&format!("<{id}>")).as_deref(),
            Some("PP-2026-000042")
        );
        let forged = id.replace("000042", "000043");
        assert_eq!(s.verify(&forged), None);
        // The key survives a restart.
        let again = Signer::load_or_create(dir.path(), "gate.test").unwrap();
        assert_eq!(again.verify(&id).as_deref(), Some("PP-2026-000042"));
    }
}
