use serde_json::json;

use super::*;
use crate::api::tenant::Identity;
use crate::api::{DynamoDbStorage, KmsStorage, S3Storage, Storage, SystemType};
use crate::bundle::BundleInput;
use crate::model::ObjectKey;

const PROVIDER: &str = "arn:aws:iam::111122223333:oidc-provider/oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLE";
const ISSUER: &str = "oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLE";

fn identity(arn: &str) -> Identity {
    Identity {
        oidc_provider_arn: arn.into(),
        manage_roles: true,
        role_name_prefix: "edict-".into(),
        role_path: "/edict/".into(),
        permissions_boundary: None,
        endpoint: None,
    }
}

fn storage(prefix: &str, sse_kms: bool, key: Option<&str>) -> Storage {
    Storage {
        region: "eu-west-1".into(),
        s3: S3Storage {
            bucket: "acme-bundles".into(),
            prefix: prefix.into(),
            endpoint: None,
            force_path_style: false,
            sse_kms,
        },
        dynamodb: DynamoDbStorage { table: "t".into(), endpoint: None, create: false },
        kms: key.map(|k| KmsStorage { key_id: k.into(), signing_key_id: None, endpoint: None }),
    }
}

fn input() -> BundleInput {
    BundleInput::new("acme", "prod-eu", ObjectKey::new("team-a", "api"), SystemType::Kubernetes)
}

const LIVE: &str = "bundles/acme/prod-eu/team-a/api/bundle.tar.gz";

fn valid(name: &str) -> bool {
    name.len() <= MAX_ROLE_NAME && name.chars().all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c))
}

#[test]
fn short_role_names_are_the_plain_id() {
    assert_eq!(role_name("edict-", "prod-eu", "team-a", "api"), "edict-prod-eu-team-a-api");
}

#[test]
fn long_role_names_are_shortened_with_a_stable_distinct_hash() {
    let ns = "a-namespace-with-a-rather-long-name";
    let a = role_name("edict-", "prod-eu-west-1", ns, "payments-gateway-opa");
    let b = role_name("edict-", "prod-eu-west-1", ns, "payments-gateway-opb");
    assert!(valid(&a) && valid(&b), "{a} {b}");
    assert_eq!(a.len(), MAX_ROLE_NAME);
    assert_ne!(a, b, "same first 55 characters, different systems");
    assert_eq!(a, role_name("edict-", "prod-eu-west-1", ns, "payments-gateway-opa"), "stable");
    assert!(a.starts_with("edict-prod-eu-west-1-a-namespace-with"), "{a}");
    let (_, hash) = a.rsplit_once('-').expect("a hash");
    assert!(hash.len() == 8 && hash.bytes().all(|b| b.is_ascii_hexdigit()), "{a}");
    // Exactly 64 characters stays as it is.
    let exact = role_name("edict-", "c", &"n".repeat(64 - 6 - 1 - 2 - 1), "s");
    assert_eq!(exact.len(), 64);
    assert!(!exact.contains("--") && exact.ends_with("-s"), "{exact}");
}

#[test]
fn role_names_with_characters_iam_refuses_are_cleaned_and_hashed() {
    let name = role_name("edict/", "prod", "team-a", "api");
    assert!(valid(&name), "{name}");
    assert!(name.starts_with("edict-prod-team-a-api-"), "{name}");
    assert_ne!(name, role_name("edict-", "prod", "team-a", "api"));
}

#[test]
fn provider_arn_parts() {
    assert_eq!(account_of(PROVIDER).expect("account"), "111122223333");
    assert_eq!(issuer_of(PROVIDER).expect("issuer"), ISSUER);
    assert_eq!(partition_of(PROVIDER).expect("partition"), "aws");
    let cn = "arn:aws-cn:iam::111122223333:oidc-provider/oidc.eks.cn-north-1.amazonaws.com.cn/id/X";
    assert_eq!(partition_of(cn).expect("partition"), "aws-cn");
    let gov = "arn:aws-us-gov:iam::111122223333:oidc-provider/oidc.eks.us-gov-west-1.amazonaws.com/id/X";
    assert_eq!(partition_of(gov).expect("partition"), "aws-us-gov");
}

#[test]
fn malformed_provider_arns_name_the_field_and_the_value() {
    for (arn, why) in [
        ("oidc.eks.eu-west-1.amazonaws.com/id/X", "six parts"),
        ("arn:aws:iam::111122223333:role/edict/x", "oidc-provider/"),
        ("arn:aws:iam::1111:oidc-provider/x", "12 digits"),
        ("arn:aws:sts::111122223333:oidc-provider/x", "not an IAM ARN"),
        ("arn:azure:iam::111122223333:oidc-provider/x", "partition"),
        ("arn:aws:iam::111122223333:oidc-provider/", "oidc-provider/"),
    ] {
        let err = issuer_of(arn).expect_err(arn).to_string();
        assert!(err.starts_with(&format!("spec.identity.oidcProviderArn {arn:?} ")), "{err}");
        assert!(err.contains(why), "{err}");
    }
}

#[test]
fn role_arns_have_the_partition_account_and_path() {
    let id = identity(PROVIDER);
    assert_eq!(role_arn(&id, "edict-x").expect("arn"), "arn:aws:iam::111122223333:role/edict/edict-x");
    let root = Identity { role_path: "/".into(), ..identity(PROVIDER) };
    assert_eq!(role_arn(&root, "edict-x").expect("arn"), "arn:aws:iam::111122223333:role/edict-x");
    let bare = Identity { role_path: "a/b".into(), ..identity(PROVIDER) };
    assert_eq!(role_path(&bare), "/a/b/");
    let cn = identity("arn:aws-cn:iam::111122223333:oidc-provider/oidc.eks.cn-north-1.amazonaws.com.cn/id/X");
    assert_eq!(role_arn(&cn, "r").expect("arn"), "arn:aws-cn:iam::111122223333:role/edict/r");
}

#[test]
fn the_trust_policy_admits_one_service_account_with_the_sts_audience() {
    let policy = trust_policy(&identity(PROVIDER), "team-a", "opa").expect("policy");
    assert_eq!(
        policy,
        json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Effect": "Allow",
                "Principal": {"Federated": PROVIDER},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": {"StringEquals": {
                    "oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLE:sub": "system:serviceaccount:team-a:opa",
                    "oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLE:aud": "sts.amazonaws.com",
                }},
            }],
        })
    );
}

#[test]
fn the_bundle_policy_reads_the_systems_directory_only() {
    let policy =
        bundle_policy(&storage("prod/", false, Some("k")), &identity(PROVIDER), LIVE).expect("policy");
    assert_eq!(
        policy,
        json!({"Version": "2012-10-17", "Statement": [{
            "Sid": "ReadBundle",
            "Effect": "Allow",
            "Action": "s3:GetObject",
            "Resource": "arn:aws:s3:::acme-bundles/prod/bundles/acme/prod-eu/team-a/api/*",
        }]}),
        "sse_kms off: no kms statement"
    );
    for prefix in ["", "/"] {
        let policy = bundle_policy(&storage(prefix, true, None), &identity(PROVIDER), LIVE).expect("policy");
        assert_eq!(
            policy["Statement"],
            json!([{
                "Sid": "ReadBundle",
                "Effect": "Allow",
                "Action": "s3:GetObject",
                "Resource": "arn:aws:s3:::acme-bundles/bundles/acme/prod-eu/team-a/api/*",
            }]),
            "prefix {prefix:?}, no kms key"
        );
    }
    let gov = identity("arn:aws-us-gov:iam::111122223333:oidc-provider/o/id/X");
    let policy = bundle_policy(&storage("/a/b/", false, None), &gov, LIVE).expect("policy");
    assert_eq!(
        policy["Statement"][0]["Resource"],
        "arn:aws-us-gov:s3:::acme-bundles/a/b/bundles/acme/prod-eu/team-a/api/*"
    );
}

#[test]
fn the_bundle_policy_decrypts_with_the_sse_key_through_s3_only() {
    let decrypt = |key: &str| {
        let policy = bundle_policy(&storage("", true, Some(key)), &identity(PROVIDER), LIVE).expect("policy");
        assert_eq!(policy["Statement"].as_array().map(Vec::len), Some(2), "{policy}");
        policy["Statement"][1].clone()
    };
    let via = json!({"kms:ViaService": "s3.eu-west-1.amazonaws.com"});
    let arn = "arn:aws:kms:eu-west-1:444455556666:key/1234abcd-12ab-34cd-56ef-1234567890ab";
    assert_eq!(
        decrypt(arn),
        json!({
            "Sid": "DecryptBundle",
            "Effect": "Allow",
            "Action": "kms:Decrypt",
            "Resource": arn,
            "Condition": {"StringEquals": via},
        })
    );
    let bare = decrypt("1234abcd-12ab-34cd-56ef-1234567890ab");
    assert_eq!(
        bare["Resource"],
        "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    );
    assert_eq!(bare["Condition"], json!({"StringEquals": via}));
    let alias = json!({
        "Sid": "DecryptBundle",
        "Effect": "Allow",
        "Action": "kms:Decrypt",
        "Resource": "*",
        "Condition": {
            "StringEquals": via,
            "ForAnyValue:StringEquals": {"kms:ResourceAliases": "alias/acme-bundles"},
        },
    });
    assert_eq!(decrypt("alias/acme-bundles"), alias);
    assert_eq!(decrypt("arn:aws:kms:eu-west-1:111122223333:alias/acme-bundles"), alias, "an alias ARN");
    let cn = identity("arn:aws-cn:iam::111122223333:oidc-provider/o/id/X");
    let policy = bundle_policy(&storage("", true, Some("k")), &cn, LIVE).expect("policy");
    assert_eq!(policy["Statement"][1]["Resource"], "arn:aws-cn:kms:eu-west-1:111122223333:key/k");
    assert_eq!(
        policy["Statement"][1]["Condition"]["StringEquals"]["kms:ViaService"],
        "s3.eu-west-1.amazonaws.com.cn"
    );
}

#[test]
fn a_role_spec_for_a_system() {
    let id = Identity {
        permissions_boundary: Some("arn:aws:iam::111122223333:policy/b".into()),
        ..identity(PROVIDER)
    };
    let spec = RoleSpec::for_system(&id, &storage("p", true, None), &input(), "opa").expect("spec");
    assert_eq!(spec.name, "edict-prod-eu-team-a-api");
    assert_eq!(spec.path, "/edict/");
    assert_eq!(spec.inline_name, "edict-bundle");
    assert_eq!(spec.system_id, "prod-eu/team-a/api");
    assert_eq!(spec.boundary.as_deref(), Some("arn:aws:iam::111122223333:policy/b"));
    assert_eq!(spec.trust, trust_policy(&id, "team-a", "opa").expect("trust"));
    assert_eq!(
        spec.inline["Statement"][0]["Resource"],
        "arn:aws:s3:::acme-bundles/p/bundles/acme/prod-eu/team-a/api/*"
    );
    let bad = identity("not-an-arn");
    assert!(matches!(
        RoleSpec::for_system(&bad, &storage("", true, None), &input(), "opa"),
        Err(IamError::InvalidProviderArn { .. })
    ));
}

#[test]
fn documents_parse_encoded_or_not() {
    let doc =
        json!({"Statement": [{"Condition": {"StringEquals": {"a:sub": "system:serviceaccount:n:s+x y"}}}]});
    assert_eq!(parse_document(&doc.to_string()), Some(doc.clone()));
    let encoded = "%7B%22Statement%22%3A%5B%7B%22Condition%22%3A%7B%22StringEquals%22%3A%7B%22a%3Asub%22%3A%22system%3Aserviceaccount%3An%3As%2Bx%20y%22%7D%7D%7D%5D%7D";
    assert_eq!(parse_document(encoded), Some(doc));
    assert_eq!(parse_document("%7B%2"), None);
    assert_eq!(parse_document("not json"), None);
}

#[test]
fn only_outages_are_transient() {
    let iam = |code: &str| IamError::Iam {
        op: "GetRole",
        role: "r".into(),
        code: code.into(),
        message: String::new(),
    };
    assert!(iam("Unreachable").is_transient());
    assert!(iam("Throttling").is_transient());
    assert!(!iam("AccessDenied").is_transient());
    assert!(!IamError::NotManaged { role: "r".into() }.is_transient());
}
