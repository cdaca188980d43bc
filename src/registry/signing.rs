//! Signing bundles with an asymmetric ECC_NIST_P256 key in KMS (ES256), in the format OPA
//! verifies (`.signatures.json`, see [`crate::bundle::signing`]).

use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{MessageType, SigningAlgorithmSpec};
use sha2::{Digest, Sha256};

use crate::bundle::Bundle;
use crate::bundle::signing::{claims, jwt, signatures_file, signing_input};
use crate::registry::keys::{KeyError, kms_error};

/// KMS accepts at most this many bytes as a RAW message; longer inputs are signed as a digest.
const RAW_LIMIT: usize = 4096;

/// A KMS key that signs bundles.
#[derive(Clone, Debug)]
pub struct KmsSigner {
    client: aws_sdk_kms::Client,
    key_id: String,
}

impl KmsSigner {
    /// The signing key `key_id` (id, ARN or alias; ECC_NIST_P256, SIGN_VERIFY).
    pub fn new(client: aws_sdk_kms::Client, key_id: &str) -> Self {
        KmsSigner { client, key_id: key_id.to_string() }
    }

    /// The `kid` written in the JWT header, which OPA's `keys` configuration must name.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// An ES256 signature (r ‖ s, 64 bytes) over `message`.
    pub async fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        let (message_type, body) = if message.len() <= RAW_LIMIT {
            (MessageType::Raw, message.to_vec())
        } else {
            (MessageType::Digest, Sha256::digest(message).to_vec())
        };
        let out = self
            .client
            .sign()
            .key_id(&self.key_id)
            .message(Blob::new(body))
            .message_type(message_type)
            .signing_algorithm(SigningAlgorithmSpec::EcdsaSha256)
            .send()
            .await
            .map_err(|e| kms_error("Sign", &self.key_id, e))?;
        let der = out.signature().map(|b| b.as_ref().to_vec()).unwrap_or_default();
        let signature = p256::ecdsa::Signature::from_der(&der).map_err(|e| KeyError::Kms {
            op: "Sign",
            key: self.key_id.clone(),
            code: "InvalidSignature".into(),
            message: format!("KMS returned a signature that is not an ECDSA P-256 DER signature: {e}"),
        })?;
        Ok(signature.to_bytes().to_vec())
    }

    /// The `.signatures.json` for a bundle, scoped to `scope`.
    pub async fn sign_bundle(&self, bundle: &Bundle, scope: &str) -> Result<Vec<u8>, KeyError> {
        let input = signing_input(&self.key_id, &claims(bundle, scope));
        let signature = self.sign(input.as_bytes()).await?;
        Ok(signatures_file(&jwt(&input, &signature)))
    }

    /// The public key as PEM (`-----BEGIN PUBLIC KEY-----`), for OPA's `keys` configuration.
    pub async fn public_key_pem(&self) -> Result<String, KeyError> {
        let out = self
            .client
            .get_public_key()
            .key_id(&self.key_id)
            .send()
            .await
            .map_err(|e| kms_error("GetPublicKey", &self.key_id, e))?;
        let der = out.public_key().map(|b| b.as_ref().to_vec()).unwrap_or_default();
        Ok(pem("PUBLIC KEY", &der))
    }
}

/// A signer bound to the scope OPA is configured with.
#[derive(Clone, Debug)]
pub struct ScopedSigner {
    /// The KMS key.
    pub signer: KmsSigner,
    /// The `scope` claim.
    pub scope: String,
}

#[async_trait::async_trait]
impl crate::registry::BundleSigner for ScopedSigner {
    async fn sign(&self, bundle: &Bundle) -> Result<Vec<u8>, String> {
        self.signer.sign_bundle(bundle, &self.scope).await.map_err(|e| e.to_string())
    }
}

/// PEM armour with 64-character lines.
pub fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}
