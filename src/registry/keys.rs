//! Envelope encryption for what edict stores for a tenant (the commit log, ...).
//!
//! The tenant's master key in KMS wraps a 256-bit data key (`GenerateDataKey`); the wrapped
//! form is kept in the tenant index, the plaintext only in memory, zeroized on drop. Data is
//! sealed with AES-256-GCM under the current key; every sealed blob names its key, so after a
//! rotation the older keys still open what they sealed.

use std::collections::BTreeMap;

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use aws_sdk_kms::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::DataKeySpec;
use zeroize::Zeroizing;

/// The first bytes of every sealed blob (format version 1).
const MAGIC: &[u8; 4] = b"EDK1";
/// Bytes of an AES-GCM nonce.
const NONCE_LEN: usize = 12;

/// Why a key operation failed.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// KMS refused or could not be reached.
    #[error("KMS {op} with key {key}: {code}: {message}")]
    Kms {
        /// The KMS operation.
        op: &'static str,
        /// The KMS key.
        key: String,
        /// The service's error code (`NotFoundException`, `AccessDeniedException`, `Unreachable`, ...).
        code: String,
        /// The service's message.
        message: String,
    },
    /// A blob that is not sealed by edict, was altered, or was sealed for other context.
    #[error("cannot open sealed data: {0}")]
    Open(String),
    /// A blob sealed with a key this ring does not hold.
    #[error("sealed with data key {0}, which is not loaded")]
    UnknownKey(String),
}

impl KeyError {
    /// Whether retrying later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, KeyError::Kms { code, .. } if code == "Unreachable" || code.contains("Throttl") || code == "KMSInternalException")
    }
}

pub(crate) fn kms_error<E, R>(op: &'static str, key: &str, err: SdkError<E, R>) -> KeyError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let (code, message) = crate::registry::aws::describe(&err);
    KeyError::Kms { op, key: key.to_string(), code, message }
}

/// A plaintext data key, held only in memory and zeroized on drop.
pub struct DataKey {
    id: String,
    key: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataKey").field("id", &self.id).finish_non_exhaustive()
    }
}

impl DataKey {
    /// A data key from 32 plaintext bytes.
    pub fn from_bytes(id: &str, bytes: &[u8]) -> Result<Self, KeyError> {
        let mut key = Zeroizing::new([0u8; 32]);
        if bytes.len() != key.len() {
            return Err(KeyError::Open(format!("data key {id} has {} bytes, not 32", bytes.len())));
        }
        key.copy_from_slice(bytes);
        Ok(DataKey { id: id.to_string(), key })
    }

    /// The key's id (recorded in every blob it seals).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Seal `plaintext`, binding it to `context` (e.g. the object key it will be stored under).
    pub fn seal(&self, plaintext: &[u8], context: &[u8]) -> Vec<u8> {
        let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(self.key.as_slice()));
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        // Encryption with a fresh nonce and an in-memory buffer does not fail.
        let sealed = cipher.encrypt(&nonce, Payload { msg: plaintext, aad: context }).unwrap_or_default();
        let id = self.id.as_bytes();
        let mut out = Vec::with_capacity(MAGIC.len() + 1 + id.len() + NONCE_LEN + sealed.len());
        out.extend_from_slice(MAGIC);
        out.push(id.len().min(255) as u8);
        out.extend_from_slice(&id[..id.len().min(255)]);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    fn open_body(&self, body: &[u8], context: &[u8]) -> Result<Vec<u8>, KeyError> {
        if body.len() < NONCE_LEN {
            return Err(KeyError::Open("truncated".into()));
        }
        let (nonce, sealed) = body.split_at(NONCE_LEN);
        let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(self.key.as_slice()));
        cipher
            .decrypt(Nonce::from_slice(nonce), Payload { msg: sealed, aad: context })
            .map_err(|_| KeyError::Open("authentication failed (altered, wrong key or wrong context)".into()))
    }
}

/// Split a sealed blob into its key id and the rest.
fn parse(blob: &[u8]) -> Result<(&str, &[u8]), KeyError> {
    let rest = blob
        .strip_prefix(MAGIC.as_slice())
        .ok_or_else(|| KeyError::Open("not an edict sealed blob".into()))?;
    let (&len, rest) = rest.split_first().ok_or_else(|| KeyError::Open("truncated".into()))?;
    let len = len as usize;
    if rest.len() < len {
        return Err(KeyError::Open("truncated".into()));
    }
    let id = std::str::from_utf8(&rest[..len]).map_err(|_| KeyError::Open("key id is not UTF-8".into()))?;
    Ok((id, &rest[len..]))
}

/// The tenant's data keys: one current key that seals, every loaded key opens.
#[derive(Debug)]
pub struct KeyRing {
    current: String,
    keys: BTreeMap<String, DataKey>,
}

impl KeyRing {
    /// A ring whose current key is `current`.
    pub fn new(current: DataKey) -> Self {
        let id = current.id.clone();
        KeyRing { current: id.clone(), keys: BTreeMap::from([(id, current)]) }
    }

    /// Add an older (retired) key, to open what it sealed.
    pub fn add(&mut self, key: DataKey) {
        self.keys.insert(key.id.clone(), key);
    }

    /// Make a new key current (rotation); the previous one stays for opening.
    pub fn rotate(&mut self, key: DataKey) {
        self.current = key.id.clone();
        self.add(key);
    }

    /// The id of the key that seals.
    pub fn current(&self) -> &str {
        &self.current
    }

    /// Seal with the current key.
    pub fn seal(&self, plaintext: &[u8], context: &[u8]) -> Vec<u8> {
        match self.keys.get(&self.current) {
            Some(key) => key.seal(plaintext, context),
            None => Vec::new(),
        }
    }

    /// Open a blob sealed by any key of the ring.
    pub fn open(&self, blob: &[u8], context: &[u8]) -> Result<Vec<u8>, KeyError> {
        let (id, body) = parse(blob)?;
        let key = self.keys.get(id).ok_or_else(|| KeyError::UnknownKey(id.to_string()))?;
        key.open_body(body, context)
    }
}

impl crate::registry::Sealer for KeyRing {
    fn seal(&self, plaintext: &[u8], context: &[u8]) -> Vec<u8> {
        KeyRing::seal(self, plaintext, context)
    }

    fn key_id(&self) -> String {
        self.current.clone()
    }
}

/// The tenant's master key in KMS.
#[derive(Clone, Debug)]
pub struct MasterKey {
    client: aws_sdk_kms::Client,
    key_id: String,
    tenant: String,
}

impl MasterKey {
    /// The master key `key_id` of `tenant` (the tenant name is bound into every wrap as encryption context).
    pub fn new(client: aws_sdk_kms::Client, key_id: &str, tenant: &str) -> Self {
        MasterKey { client, key_id: key_id.to_string(), tenant: tenant.to_string() }
    }

    /// A new data key named `id`: its plaintext and its wrapped (ciphertext) form to store.
    pub async fn generate(&self, id: &str) -> Result<(DataKey, Vec<u8>), KeyError> {
        let out = self
            .client
            .generate_data_key()
            .key_id(&self.key_id)
            .key_spec(DataKeySpec::Aes256)
            .encryption_context("edict:tenant", &self.tenant)
            .encryption_context("edict:data-key", id)
            .send()
            .await
            .map_err(|e| kms_error("GenerateDataKey", &self.key_id, e))?;
        let plaintext = Zeroizing::new(out.plaintext().map(|b| b.as_ref().to_vec()).unwrap_or_default());
        let wrapped = out.ciphertext_blob().map(|b| b.as_ref().to_vec()).unwrap_or_default();
        Ok((DataKey::from_bytes(id, &plaintext)?, wrapped))
    }

    /// Unwrap a stored data key.
    pub async fn unwrap(&self, id: &str, wrapped: &[u8]) -> Result<DataKey, KeyError> {
        let out = self
            .client
            .decrypt()
            .key_id(&self.key_id)
            .ciphertext_blob(Blob::new(wrapped))
            .encryption_context("edict:tenant", &self.tenant)
            .encryption_context("edict:data-key", id)
            .send()
            .await
            .map_err(|e| kms_error("Decrypt", &self.key_id, e))?;
        let plaintext = Zeroizing::new(out.plaintext().map(|b| b.as_ref().to_vec()).unwrap_or_default());
        DataKey::from_bytes(id, &plaintext)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str, byte: u8) -> DataKey {
        DataKey::from_bytes(id, &[byte; 32]).expect("32 bytes")
    }

    #[test]
    fn seal_and_open_with_context() {
        let ring = KeyRing::new(key("k1", 7));
        let blob = ring.seal(b"commit entry", b"commits/acme/1");
        assert!(blob.starts_with(b"EDK1\x02k1"));
        assert_eq!(ring.open(&blob, b"commits/acme/1").expect("opens"), b"commit entry");
        assert!(matches!(ring.open(&blob, b"commits/acme/2"), Err(KeyError::Open(_))), "context is bound");
        let mut altered = blob.clone();
        let last = altered.len() - 1;
        altered[last] ^= 1;
        assert!(
            matches!(ring.open(&altered, b"commits/acme/1"), Err(KeyError::Open(_))),
            "tampering is detected"
        );
        assert_ne!(ring.seal(b"commit entry", b"commits/acme/1"), blob, "fresh nonce every time");
    }

    #[test]
    fn rotation_keeps_old_blobs_readable() {
        let mut ring = KeyRing::new(key("k1", 1));
        let old = ring.seal(b"old", b"");
        ring.rotate(key("k2", 2));
        assert_eq!(ring.current(), "k2");
        let new = ring.seal(b"new", b"");
        assert!(new.starts_with(b"EDK1\x02k2"));
        assert_eq!(ring.open(&old, b"").expect("old key still opens"), b"old");
        assert_eq!(ring.open(&new, b"").expect("new key opens"), b"new");
        let other = KeyRing::new(key("k2", 2));
        assert!(matches!(other.open(&old, b""), Err(KeyError::UnknownKey(id)) if id == "k1"));
    }

    #[test]
    fn wrong_length_keys_are_refused() {
        assert!(DataKey::from_bytes("k", &[0; 16]).is_err());
        assert!(matches!(KeyRing::new(key("k", 0)).open(b"nope", b""), Err(KeyError::Open(_))));
    }
}
