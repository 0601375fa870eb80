//! Encryption of Bitbucket tokens at rest (XChaCha20-Poly1305) and random secrets.
//!
//! The key comes from `CODELAYER_SECRET_KEY` (64 hex characters) or from `DATA_DIR/secret.key`,
//! made on first start with mode 0600. Each ciphertext is bound to its row and column through
//! the associated data, so a token copied into another user's row does not decrypt.

use std::{io::Write, path::Path};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chacha20poly1305::{
    KeyInit, XChaCha20Poly1305, XNonce,
    aead::{Aead, Generate, Payload},
};

/// Seals and opens secrets stored in the database.
#[derive(Clone)]
pub struct SecretBox {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(..)")
    }
}

/// A sealed value could not be opened: wrong key, tampered or moved to another row.
#[derive(Debug, thiserror::Error)]
#[error("a stored secret could not be decrypted (was the secret key changed?)")]
pub struct OpenError;

impl SecretBox {
    /// Loads the key from the configured value, else from (or into) `data_dir/secret.key`.
    pub fn load(configured: Option<&str>, data_dir: &Path) -> Result<SecretBox, String> {
        let hex_key = match configured {
            Some(k) => k.trim().to_owned(),
            None => read_or_create_key_file(&data_dir.join("secret.key"))?,
        };
        let bytes = decode_hex(&hex_key)
            .filter(|b| b.len() == 32)
            .ok_or("CODELAYER_SECRET_KEY must be 64 hexadecimal characters (32 bytes)")?;
        let cipher = XChaCha20Poly1305::new_from_slice(&bytes).map_err(|_| "bad key length")?;
        Ok(SecretBox { cipher })
    }

    /// Encrypts `plain`; `context` names where it is stored (e.g. "access_token:42").
    pub fn seal(&self, plain: &str, context: &str) -> String {
        let nonce = XNonce::generate();
        let sealed = self
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plain.as_bytes(),
                    aad: context.as_bytes(),
                },
            )
            .expect("XChaCha20-Poly1305 encrypts any message of practical length");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        format!("v1.{}", URL_SAFE_NO_PAD.encode(out))
    }

    /// Decrypts what `seal` produced with the same `context`.
    pub fn open(&self, sealed: &str, context: &str) -> Result<String, OpenError> {
        let raw = sealed
            .strip_prefix("v1.")
            .and_then(|b| URL_SAFE_NO_PAD.decode(b).ok())
            .filter(|r| r.len() > 24)
            .ok_or(OpenError)?;
        let (nonce, body) = raw.split_at(24);
        let nonce = XNonce::try_from(nonce).map_err(|_| OpenError)?;
        let plain = self
            .cipher
            .decrypt(
                &nonce,
                Payload {
                    msg: body,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| OpenError)?;
        String::from_utf8(plain).map_err(|_| OpenError)
    }
}

/// Whether two secrets are equal, comparing every byte: how far they agree must not show in
/// the time the comparison takes.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `n` random bytes from the operating system's CSPRNG, URL-safe base64 encoded.
pub fn random_token(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    rand::fill(&mut bytes[..]);
    URL_SAFE_NO_PAD.encode(bytes)
}

fn read_or_create_key_file(path: &Path) -> Result<String, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text.trim().to_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut bytes = [0u8; 32];
            rand::fill(&mut bytes);
            let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(0o600);
            }
            let mut file = options
                .open(path)
                .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
            file.write_all(hex.as_bytes())
                .and_then(|_| file.sync_all())
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            Ok(hex)
        }
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SecretBox {
        SecretBox::load(Some(&"ab".repeat(32)), Path::new("/nonexistent")).expect("valid key")
    }

    #[test]
    fn sealed_text_opens_only_in_its_context() {
        let secrets = sample();
        let sealed = secrets.seal("token-value", "access_token:1");
        assert!(!sealed.contains("token-value"));
        assert_eq!(
            secrets.open(&sealed, "access_token:1").expect("opens"),
            "token-value"
        );
        assert!(secrets.open(&sealed, "access_token:2").is_err());
        assert_ne!(
            sealed,
            secrets.seal("token-value", "access_token:1"),
            "fresh nonce"
        );
    }

    #[test]
    fn key_file_is_created_private_and_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = SecretBox::load(None, dir.path()).expect("created");
        let sealed = a.seal("x", "c");
        let b = SecretBox::load(None, dir.path()).expect("reloaded");
        assert_eq!(b.open(&sealed, "c").expect("same key"), "x");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("secret.key")).expect("exists");
            assert_eq!(mode.permissions().mode() & 0o777, 0o600);
        }
    }

    #[test]
    fn a_short_key_is_refused() {
        assert!(SecretBox::load(Some("abcd"), Path::new("/x")).is_err());
    }
}
