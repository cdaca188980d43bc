//! What a bundle signature covers, in OPA's format: a `.signatures.json` holding one JWT whose
//! payload lists every file of the bundle with its SHA-256.
//!
//! OPA hashes `.rego` files as bytes and JSON files (`.manifest`, `data.json`) as their parsed
//! value written canonically (sorted keys, no whitespace, Go's string escaping). edict's JSON
//! files are already canonical, so hashing their bytes gives the same digest.

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{Bundle, canonical_json};

/// The name OPA looks for.
pub const SIGNATURES_FILE: &str = ".signatures.json";

/// One file's entry in the signed payload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FileHash {
    /// Path inside the bundle, without a leading `/`.
    pub name: String,
    /// Hex digest.
    pub hash: String,
    /// Always `SHA-256`.
    pub algorithm: &'static str,
}

/// The JWT claims.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Claims {
    /// Every file of the bundle.
    pub files: Vec<FileHash>,
    /// Must equal the scope OPA is configured with.
    pub scope: String,
    /// Who signed.
    pub iss: String,
}

/// The claims for a bundle: every file, `.manifest` included, sorted by name.
pub fn claims(bundle: &Bundle, scope: &str) -> Claims {
    let mut files: Vec<FileHash> = std::iter::once((".manifest".to_string(), bundle.manifest_bytes()))
        .chain(bundle.files.iter().map(|(p, b)| (p.clone(), b.clone())))
        .map(|(name, bytes)| FileHash {
            name,
            hash: hex::encode(Sha256::digest(&bytes)),
            algorithm: "SHA-256",
        })
        .collect();
    files.sort_by(|a, b| a.name.cmp(&b.name));
    Claims { files, scope: scope.to_string(), iss: "edict".to_string() }
}

/// `base64url(header) "." base64url(claims)`: the bytes an ES256 signature covers.
pub fn signing_input(key_id: &str, claims: &Claims) -> String {
    let header = serde_json::json!({"alg": "ES256", "kid": key_id, "typ": "JWT"});
    let claims = serde_json::to_value(claims).unwrap_or_default();
    format!("{}.{}", b64(&canonical_json(&header)), b64(&canonical_json(&claims)))
}

/// The compact JWT from its signing input and the raw (r ‖ s, 64 bytes) ES256 signature.
pub fn jwt(signing_input: &str, signature: &[u8]) -> String {
    format!("{signing_input}.{}", b64(signature))
}

/// The `.signatures.json` file holding one JWT.
pub fn signatures_file(jwt: &str) -> Vec<u8> {
    canonical_json(&serde_json::json!({ "signatures": [jwt] }))
}

/// Unpadded base64url, as JWTs use.
pub fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl Bundle {
    /// The archive with a `.signatures.json` added (the signature covers every other file).
    pub fn signed_archive(&self, signatures: &[u8]) -> Vec<u8> {
        let mut entries: Vec<(String, Vec<u8>)> = vec![
            (".manifest".to_string(), self.manifest_bytes()),
            (SIGNATURES_FILE.to_string(), signatures.to_vec()),
        ];
        entries.extend(self.files.iter().map(|(p, b)| (p.clone(), b.clone())));
        super::write_archive(&entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_cover_every_file_sorted() {
        let bundle = Bundle {
            files: [
                ("b/x.rego".to_string(), b"package b".to_vec()),
                ("data.json".to_string(), b"{}".to_vec()),
            ]
            .into(),
            manifest: super::super::Manifest {
                revision: "r".into(),
                roots: vec!["b".into()],
                rego_version: 1,
                metadata: serde_json::json!({}),
            },
        };
        let c = claims(&bundle, "write");
        let names: Vec<&str> = c.files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, vec![".manifest", "b/x.rego", "data.json"]);
        assert_eq!(c.files[1].hash, hex::encode(Sha256::digest(b"package b")));
        let input = signing_input("k1", &c);
        let header = input.split('.').next().expect("header");
        assert_eq!(header, b64(br#"{"alg":"ES256","kid":"k1","typ":"JWT"}"#));
        assert_eq!(jwt("a.b", &[0xfb, 0xff]), "a.b.-_8");
    }
}
