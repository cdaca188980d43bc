//! The IAM role of each System's OPA (IRSA) against moto's IAM and STS: created with the trust
//! and inline policies edict renders, left alone when it already is as desired, updated when the
//! System changes, never taken over or deleted when edict did not create it.
//!
//! moto accepts any web identity token and does not evaluate trust policies (its STS even
//! "assumes" roles that do not exist), so these tests check the documents IAM stores and that
//! the role is assumable; they cannot prove that IAM enforces the subject and audience.
//!
//! Each test uses its own OIDC provider and role names, so they run in parallel in one moto
//! without resetting it.
#![cfg(feature = "aws")]

mod common;

use aws_sdk_iam::types::Tag;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::aws;
use edict::api::tenant::Identity;
use edict::api::{DynamoDbStorage, KmsStorage, S3Storage, Storage, SystemType};
use edict::bundle::BundleInput;
use edict::identity::{self, IamError, RoleChange, RoleSpec, Roles};
use edict::model::ObjectKey;
use serde_json::{Value, json};

/// A tenant's identity with its own OIDC provider (and so its own issuer) and role-name prefix.
async fn identity(client: &aws_sdk_iam::Client) -> Identity {
    let (oidc_provider_arn, _) = aws::oidc_provider(client).await;
    Identity {
        oidc_provider_arn,
        manage_roles: true,
        role_name_prefix: format!("{}-", aws::unique("e")),
        role_path: "/edict/".into(),
        permissions_boundary: None,
        endpoint: Some(aws::moto()),
    }
}

/// A plain IAM client for moto, for what the tests set up and inspect.
fn client() -> aws_sdk_iam::Client {
    aws_sdk_iam::Client::new(&aws::sdk_config(&aws::moto(), "testing", "testing"))
}

/// edict's roles, through a client built as the operator builds it: the endpoint comes from
/// `identity.endpoint` alone.
fn roles(identity: &Identity) -> Roles {
    let mut config = aws::sdk_config(&aws::moto(), "testing", "testing").to_builder();
    config.set_endpoint_url(None);
    Roles::new(edict::registry::aws::iam_from(&config.build(), identity))
}

fn storage() -> Storage {
    Storage {
        region: "us-east-1".into(),
        s3: S3Storage {
            bucket: "acme-bundles".into(),
            prefix: "prod".into(),
            endpoint: None,
            force_path_style: true,
            sse_kms: true,
        },
        dynamodb: DynamoDbStorage { table: "acme".into(), endpoint: None, create: false },
        kms: Some(KmsStorage { key_id: "alias/acme-bundles".into(), signing_key_id: None, endpoint: None }),
    }
}

fn system(name: &str) -> BundleInput {
    BundleInput::new("acme", "test", ObjectKey::new("team-a", name), SystemType::Kubernetes)
}

/// The trust policy IAM stores for a role.
async fn stored_trust(client: &aws_sdk_iam::Client, name: &str) -> Value {
    let out = client.get_role().role_name(name).send().await.expect("GetRole");
    let raw = out.role().and_then(|r| r.assume_role_policy_document()).expect("trust policy");
    identity::parse_document(raw).expect("a JSON trust policy")
}

/// The inline policy IAM stores for a role, or `None` when there is none of that name.
async fn stored_inline(client: &aws_sdk_iam::Client, name: &str) -> Option<Value> {
    match client.get_role_policy().role_name(name).policy_name(identity::INLINE_POLICY).send().await {
        Ok(out) => Some(identity::parse_document(out.policy_document()).expect("a JSON policy")),
        Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_entity_exception()) => None,
        Err(e) => panic!("GetRolePolicy: {e:?}"),
    }
}

async fn exists(client: &aws_sdk_iam::Client, name: &str) -> bool {
    match client.get_role().role_name(name).send().await {
        Ok(_) => true,
        Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_entity_exception()) => false,
        Err(e) => panic!("GetRole: {e:?}"),
    }
}

#[tokio::test]
async fn ensure_creates_the_role_then_only_changes_what_differs() {
    let client = client();
    let identity = identity(&client).await;
    let issuer = identity::issuer_of(&identity.oidc_provider_arn).expect("issuer").to_string();
    let roles = roles(&identity);
    let api = system("api");
    let spec = RoleSpec::for_system(&identity, &storage(), &api, "opa").expect("spec");

    let created = roles.ensure(&spec).await.expect("create");
    assert_eq!(created.change, RoleChange::Created);
    assert_eq!(created.arn, identity::role_arn(&identity, &spec.name).expect("arn"));
    assert!(created.arn.ends_with(&format!(":role/edict/{}", spec.name)), "{}", created.arn);

    let role = client.get_role().role_name(&spec.name).send().await.expect("GetRole");
    let role = role.role().expect("role");
    assert_eq!(role.path(), "/edict/");
    let tags: Vec<(&str, &str)> = role.tags().iter().map(|t| (t.key(), t.value())).collect();
    assert!(tags.contains(&("edict.dev/managed-by", "edict")), "{tags:?}");
    assert!(tags.contains(&("edict.dev/system-id", "test/team-a/api")), "{tags:?}");

    let trust = stored_trust(&client, &spec.name).await;
    let statement = &trust["Statement"][0];
    assert_eq!(statement["Principal"], json!({"Federated": identity.oidc_provider_arn}));
    assert_eq!(statement["Action"], "sts:AssumeRoleWithWebIdentity");
    assert_eq!(
        statement["Condition"],
        json!({"StringEquals": {
            format!("{issuer}:sub"): "system:serviceaccount:team-a:opa",
            format!("{issuer}:aud"): "sts.amazonaws.com",
        }}),
        "exactly the subject and the audience"
    );

    let inline = stored_inline(&client, &spec.name).await.expect("inline policy");
    let statements = inline["Statement"].as_array().expect("statements");
    let grants: Vec<(&str, &str)> = statements
        .iter()
        .map(|s| (s["Action"].as_str().unwrap_or_default(), s["Resource"].as_str().unwrap_or_default()))
        .collect();
    assert_eq!(
        grants,
        [
            ("s3:GetObject", "arn:aws:s3:::acme-bundles/prod/bundles/acme/test/team-a/api/*"),
            ("kms:Decrypt", "*"),
        ]
    );
    assert_eq!(
        statements[1]["Condition"],
        json!({
            "StringEquals": {"kms:ViaService": "s3.us-east-1.amazonaws.com"},
            "ForAnyValue:StringEquals": {"kms:ResourceAliases": "alias/acme-bundles"},
        })
    );

    // IAM hands the documents back URL-encoded: a second ensure still sees no difference.
    let again = roles.ensure(&spec).await.expect("again");
    assert_eq!(again.change, RoleChange::Unchanged);
    assert_eq!(again.arn, created.arn);

    // The System's OPA runs as another ServiceAccount: only the trust policy is rewritten.
    let moved = RoleSpec::for_system(&identity, &storage(), &api, "opa-v2").expect("spec");
    let updated = roles.ensure(&moved).await.expect("update");
    assert_eq!(updated.change, RoleChange::Updated(vec!["trust policy"]));
    assert_eq!(
        stored_trust(&client, &spec.name).await["Statement"][0]["Condition"]["StringEquals"]
            [format!("{issuer}:sub")],
        "system:serviceaccount:team-a:opa-v2"
    );
    assert_eq!(roles.ensure(&moved).await.expect("settled").change, RoleChange::Unchanged);

    // The bucket's prefix moves: only the inline policy is rewritten.
    let mut elsewhere = storage();
    elsewhere.s3.prefix = "staging".into();
    let relocated = RoleSpec::for_system(&identity, &elsewhere, &api, "opa-v2").expect("spec");
    assert_eq!(
        roles.ensure(&relocated).await.expect("update").change,
        RoleChange::Updated(vec!["inline policy"])
    );
    assert_eq!(
        stored_inline(&client, &spec.name).await.expect("inline")["Statement"][0]["Resource"],
        "arn:aws:s3:::acme-bundles/staging/bundles/acme/test/team-a/api/*"
    );
    roles.delete(&spec.name, &spec.system_id).await.expect("clean up");
}

#[tokio::test]
async fn the_permissions_boundary_follows_the_tenant() {
    let client = client();
    let mut identity = identity(&client).await;
    let account = identity::account_of(&identity.oidc_provider_arn).expect("account").to_string();
    let boundary = format!("arn:aws:iam::{account}:policy/edict-boundary");
    identity.permissions_boundary = Some(boundary.clone());
    let roles = roles(&identity);
    let spec = RoleSpec::for_system(&identity, &storage(), &system("api"), "opa").expect("spec");
    assert_eq!(roles.ensure(&spec).await.expect("create").change, RoleChange::Created);
    let role = client.get_role().role_name(&spec.name).send().await.expect("GetRole");
    let stored =
        role.role().and_then(|r| r.permissions_boundary()).and_then(|b| b.permissions_boundary_arn());
    assert_eq!(stored, Some(boundary.as_str()));

    let unbounded = RoleSpec { boundary: None, ..spec.clone() };
    assert_eq!(
        roles.ensure(&unbounded).await.expect("update").change,
        RoleChange::Updated(vec!["permissions boundary"])
    );
    let role = client.get_role().role_name(&spec.name).send().await.expect("GetRole");
    assert!(role.role().and_then(|r| r.permissions_boundary()).is_none());
    assert_eq!(roles.ensure(&unbounded).await.expect("settled").change, RoleChange::Unchanged);
    roles.delete(&spec.name, &spec.system_id).await.expect("clean up");
}

#[tokio::test]
async fn a_role_edict_did_not_create_is_refused_and_left_as_it_was() {
    let client = client();
    let identity = identity(&client).await;
    let roles = roles(&identity);
    let spec = RoleSpec::for_system(&identity, &storage(), &system("api"), "opa").expect("spec");
    let theirs = json!({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}],
    });
    let their_inline = json!({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
    });
    client
        .create_role()
        .role_name(&spec.name)
        .path("/")
        .assume_role_policy_document(theirs.to_string())
        .send()
        .await
        .expect("someone else's role");
    client
        .put_role_policy()
        .role_name(&spec.name)
        .policy_name("theirs")
        .policy_document(their_inline.to_string())
        .send()
        .await
        .expect("someone else's policy");

    let err = roles.ensure(&spec).await.expect_err("not edict's");
    assert!(matches!(&err, IamError::NotManaged { role } if *role == spec.name), "{err}");
    assert!(
        err.to_string().contains(&format!("IAM role {} exists but was not created by edict", spec.name)),
        "{err}"
    );
    assert!(!err.is_transient());

    let err = roles.delete(&spec.name, &spec.system_id).await.expect_err("not edict's");
    assert!(matches!(&err, IamError::NotManaged { .. }), "{err}");

    assert_eq!(stored_trust(&client, &spec.name).await, theirs, "trust policy untouched");
    let policies = client.list_role_policies().role_name(&spec.name).send().await.expect("ListRolePolicies");
    assert_eq!(policies.policy_names(), ["theirs"], "no inline policy added, theirs kept");
    let role = client.get_role().role_name(&spec.name).send().await.expect("GetRole");
    assert!(role.role().is_some_and(|r| r.tags().is_empty() && r.path() == "/"), "{role:?}");
}

#[tokio::test]
async fn a_role_of_another_system_is_refused() {
    let client = client();
    let identity = identity(&client).await;
    let roles = roles(&identity);
    let spec = RoleSpec::for_system(&identity, &storage(), &system("api"), "opa").expect("spec");
    client
        .create_role()
        .role_name(&spec.name)
        .assume_role_policy_document(spec.trust.to_string())
        .tags(Tag::builder().key(identity::MANAGED_BY_TAG).value(identity::MANAGED_BY).build().expect("tag"))
        .tags(Tag::builder().key(identity::SYSTEM_ID_TAG).value("other/team-b/api").build().expect("tag"))
        .send()
        .await
        .expect("another system's role");
    let err = roles.ensure(&spec).await.expect_err("another system's");
    assert!(
        matches!(&err, IamError::OtherSystem { owner, system, .. } if owner == "other/team-b/api" && system == "test/team-a/api"),
        "{err}"
    );
    assert!(stored_inline(&client, &spec.name).await.is_none(), "nothing put");
    let err = roles.delete(&spec.name, &spec.system_id).await.expect_err("another system's");
    assert!(matches!(&err, IamError::OtherSystem { .. }), "{err}");
    assert!(exists(&client, &spec.name).await);
    // Its own system may delete it.
    assert!(roles.delete(&spec.name, "other/team-b/api").await.expect("delete"));
}

#[tokio::test]
async fn delete_removes_one_role_and_its_policy_and_leaves_another() {
    let client = client();
    let identity = identity(&client).await;
    let roles = roles(&identity);
    let api = RoleSpec::for_system(&identity, &storage(), &system("api"), "opa").expect("spec");
    let web = RoleSpec::for_system(&identity, &storage(), &system("web"), "opa").expect("spec");
    roles.ensure(&api).await.expect("api");
    roles.ensure(&web).await.expect("web");

    assert!(roles.delete(&api.name, &api.system_id).await.expect("delete"));
    assert!(!exists(&client, &api.name).await, "role gone");
    assert!(stored_inline(&client, &api.name).await.is_none(), "inline policy gone");
    assert!(!roles.delete(&api.name, &api.system_id).await.expect("absent"), "absent: nothing to do");

    assert!(exists(&client, &web.name).await, "the other role stays");
    assert_eq!(stored_inline(&client, &web.name).await, Some(web.inline.clone()));
    assert_eq!(roles.ensure(&web).await.expect("web").change, RoleChange::Unchanged);
    roles.delete(&web.name, &web.system_id).await.expect("clean up");
}

/// An unsigned JWT: moto's STS does not check signatures (nor anything else in the token).
fn web_identity_token(issuer: &str, subject: &str) -> String {
    let part = |v: Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    format!(
        "{}.{}.{}",
        part(json!({"alg": "RS256", "typ": "JWT", "kid": "test"})),
        part(
            json!({"iss": format!("https://{issuer}"), "sub": subject, "aud": "sts.amazonaws.com", "iat": now, "exp": now + 3600})
        ),
        URL_SAFE_NO_PAD.encode(b"not-a-signature"),
    )
}

#[tokio::test]
async fn the_role_is_assumable_with_the_service_accounts_web_identity() {
    let client = client();
    let identity = identity(&client).await;
    let issuer = identity::issuer_of(&identity.oidc_provider_arn).expect("issuer").to_string();
    let roles = roles(&identity);
    let spec = RoleSpec::for_system(&identity, &storage(), &system("api"), "opa").expect("spec");
    let arn = roles.ensure(&spec).await.expect("create").arn;

    // The subject the stored trust policy admits, as the OPA's projected token would carry it.
    let trust = stored_trust(&client, &spec.name).await;
    let subject = trust["Statement"][0]["Condition"]["StringEquals"][format!("{issuer}:sub")]
        .as_str()
        .expect("subject")
        .to_string();
    assert_eq!(subject, "system:serviceaccount:team-a:opa");
    let token = web_identity_token(&issuer, &subject);

    let endpoint = aws::moto();
    let body = tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let mut resp = agent
            .post(format!("{}/", endpoint.trim_end_matches('/')))
            .send_form([
                ("Action", "AssumeRoleWithWebIdentity"),
                ("Version", "2011-06-15"),
                ("RoleArn", arn.as_str()),
                ("RoleSessionName", "opa-test"),
                ("WebIdentityToken", token.as_str()),
            ])
            .expect("STS reachable");
        let status = resp.status().as_u16();
        (status, resp.body_mut().read_to_string().expect("body"))
    })
    .await
    .expect("join");
    let (status, xml) = body;
    assert_eq!(status, 200, "{xml}");
    let user = between(&xml, "<AssumedRoleUser>", "</AssumedRoleUser>").expect("AssumedRoleUser");
    let account = identity::account_of(&identity.oidc_provider_arn).expect("account");
    assert_eq!(
        between(user, "<Arn>", "</Arn>"),
        Some(format!("arn:aws:sts::{account}:assumed-role/{}/opa-test", spec.name).as_str()),
        "{xml}"
    );
    assert!(between(&xml, "<AccessKeyId>", "</AccessKeyId>").is_some_and(|k| !k.is_empty()), "{xml}");
    roles.delete(&spec.name, &spec.system_id).await.expect("clean up");
}

fn between<'a>(text: &'a str, open: &str, close: &str) -> Option<&'a str> {
    let start = text.find(open)? + open.len();
    let end = text[start..].find(close)? + start;
    Some(&text[start..end])
}
