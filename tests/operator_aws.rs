//! The operator's engine end to end against moto (S3, DynamoDB, KMS, IAM) and a mock API
//! server: a System of a Tenant with storage and `identity.manageRoles` gets its bundle in S3,
//! its IAM role (trusting only its ServiceAccount), the role annotation on that ServiceAccount
//! and a ConfigMap telling OPA to fetch from S3 with that identity; deleting the System removes
//! all of it and nothing of its neighbour.
#![cfg(feature = "aws")]

mod common;

use edict::model::Kind;

use common::aws;
use common::kube::{api_server, echo};
use edict::operator::Engine;
use edict::operator::watch::Change;
use edict::sources::manifest;
use http::Method;

fn manifests(bucket: &str, table: &str, key: &str, signing: &str, provider: &str, moto: &str) -> String {
    format!(
        r#"
apiVersion: edict.dev/v1alpha1
kind: Tenant
metadata: {{name: irsa}}
spec:
  adminNamespace: irsa-admin
  namespaces: ["irsa-*"]
  storage:
    region: us-east-1
    s3: {{bucket: {bucket}, endpoint: "{moto}", forcePathStyle: true}}
    dynamodb: {{table: {table}, endpoint: "{moto}", create: true}}
    kms: {{keyId: "{key}", signingKeyId: "{signing}", endpoint: "{moto}"}}
  identity:
    oidcProviderArn: "{provider}"
    manageRoles: true
    endpoint: "{moto}"
---
apiVersion: edict.dev/v1alpha1
kind: Stack
metadata: {{name: edge, namespace: irsa-admin}}
spec: {{type: envoy, selector: {{tier: [edge]}}}}
---
apiVersion: edict.dev/v1alpha1
kind: System
metadata: {{name: api, namespace: irsa-team, uid: u-api, labels: {{tier: edge}}}}
spec: {{type: envoy, serviceAccountName: opa}}
---
apiVersion: edict.dev/v1alpha1
kind: System
metadata: {{name: web, namespace: irsa-team, uid: u-web, labels: {{tier: edge}}}}
spec: {{type: envoy, serviceAccountName: opa-web}}
"#
    )
}

/// The operator takes credentials from the standard chain: set them once, before any test of
/// this binary reads the environment (each test calls this first).
fn credentials() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| unsafe {
        std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
        std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
    });
}

#[tokio::test]
async fn a_system_gets_bundle_role_annotation_and_config_and_loses_them_on_delete() {
    credentials();
    let moto = aws::moto();
    let config = aws::sdk_config(&moto, "testing", "testing");
    let s3 = aws::s3_from(&config);
    let iam = aws_sdk_iam::Client::new(&config);
    let bucket = aws::unique("irsa");
    s3.create_bucket().bucket(&bucket).send().await.expect("bucket");
    let key = aws::master_key().await;
    let signing = aws::create_key(
        Some(aws_sdk_kms::types::KeySpec::EccNistP256),
        Some(aws_sdk_kms::types::KeyUsageType::SignVerify),
    )
    .await;
    let (provider, issuer) = aws::oidc_provider(&iam).await;
    let table = aws::unique("irsa");
    let text = manifests(&bucket, &table, &key, &signing, &provider, &moto);

    let store = tempfile::tempdir().expect("tempdir");
    // moto corrupts items under concurrent DynamoDB transactions on one table: publish one at a time.
    let mut engine = Engine::new("c1", store.path().to_path_buf()).with_parallelism(1);
    let mut keys = Vec::new();
    for located in manifest::parse("", &text).objects {
        keys.extend(engine.apply(Change::Apply(Box::new(located))));
    }
    keys.sort();
    keys.dedup();
    engine.reconcile(&keys).await;
    let (client, server) = api_server(echo);
    let notices = engine.sync(&client).await;
    assert!(notices.is_empty(), "{notices:?}");
    let statuses = engine.statuses();
    let api = &statuses.systems["irsa-team/api"];
    assert_eq!(api.conditions[0].status, edict::api::ConditionStatus::True, "{:?}", api.conditions);

    // The bundle is in S3.
    let live = "bundles/irsa/c1/irsa-team/api/bundle.tar.gz";
    s3.head_object().bucket(&bucket).key(live).send().await.expect("live bundle in S3");

    // The multi-cluster view in the Tenant's DynamoDB table: each System with its live revision
    // and Stack, the Stack's item with both Systems bound, one query each.
    {
        use edict::registry::index::TenantIndex;
        let index = edict::registry::index::dynamodb::DynamoIndex::new(
            aws_sdk_dynamodb::Client::new(&config),
            &table,
        );
        let systems = index.systems("irsa").await.expect("systems");
        let listed: Vec<(&str, Vec<String>, bool)> = systems
            .iter()
            .map(|s| {
                let live = s.live.as_ref().expect("live");
                (s.id.as_str(), live.stacks.clone(), live.published.is_some())
            })
            .collect();
        let edge = vec!["irsa-admin/edge".to_string()];
        assert_eq!(listed, [("c1/irsa-team/api", edge.clone(), true), ("c1/irsa-team/web", edge, true)]);
        let stacks = index.stacks("irsa").await.expect("stacks");
        assert_eq!(stacks.len(), 1, "{stacks:?}");
        assert_eq!(stacks[0].id, "c1/irsa-admin/edge");
        assert_eq!(stacks[0].record.as_ref().map(|r| r.stack_type.as_str()), Some("envoy"));
        assert_eq!(stacks[0].systems, ["c1/irsa-team/api", "c1/irsa-team/web"]);
    }

    // The role exists, tagged as edict's, trusting only this ServiceAccount.
    let role_name = api.role_arn.as_deref().and_then(|a| a.rsplit('/').next()).expect("role ARN in status");
    let role = iam.get_role().role_name(role_name).send().await.expect("role").role.expect("role");
    assert_eq!(Some(role.arn()), api.role_arn.as_deref());
    let trust =
        edict::identity::parse_document(role.assume_role_policy_document().expect("trust")).expect("json");
    let condition = &trust["Statement"][0]["Condition"]["StringEquals"];
    assert_eq!(condition[format!("{issuer}:sub")], "system:serviceaccount:irsa-team:opa");
    assert_eq!(condition[format!("{issuer}:aud")], "sts.amazonaws.com");
    let inline =
        iam.get_role_policy().role_name(role_name).policy_name("edict-bundle").send().await.expect("inline");
    let inline = edict::identity::parse_document(inline.policy_document()).expect("json");
    assert_eq!(
        inline["Statement"][0]["Resource"],
        format!("arn:aws:s3:::{bucket}/bundles/irsa/c1/irsa-team/api/*")
    );

    drop(client);
    let calls = server.await.expect("server");
    // The ServiceAccount was read, then annotated with that role.
    let annotate = calls
        .iter()
        .find(|c| c.is(&Method::PATCH, "/api/v1/namespaces/irsa-team/serviceaccounts/opa"))
        .expect("annotation");
    assert_eq!(annotate.body["metadata"]["annotations"]["eks.amazonaws.com/role-arn"], role.arn());
    // The ConfigMap sends OPA to S3 with its web identity.
    let map = calls
        .iter()
        .find(|c| c.is(&Method::PATCH, "/api/v1/namespaces/irsa-team/configmaps/api-opa-config"))
        .expect("config map");
    let config: serde_json::Value =
        serde_norway::from_str(map.body["data"]["config.yaml"].as_str().expect("config")).expect("yaml");
    assert_eq!(config["services"]["edict"]["url"], format!("{moto}/{bucket}"));
    assert_eq!(
        config["services"]["edict"]["credentials"]["s3_signing"]["web_identity_credentials"]["aws_region"],
        "us-east-1"
    );
    assert_eq!(config["bundles"]["api"]["resource"], live);
    // Bundles are signed: OPA gets the public key and the scope to verify them with.
    assert_eq!(config["bundles"]["api"]["signing"], serde_json::json!({"keyid": signing, "scope": "irsa"}));
    let public = config["keys"][&signing]["key"].as_str().expect("public key");
    assert!(public.starts_with("-----BEGIN PUBLIC KEY-----"), "{public}");
    assert_eq!(config["keys"][&signing]["algorithm"], "ES256");

    // Delete api: its bundles, index item, role, annotation and ConfigMap go; web stays.
    let mut deleting =
        manifest::parse("", &text).objects.into_iter().find(|l| l.object.key().name == "api").expect("api");
    if let manifest::Object::System(s) = &mut deleting.object {
        s.metadata.finalizers = Some(vec!["edict.dev/cleanup".into()]);
        s.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now()));
    }
    engine.apply(Change::Apply(Box::new(deleting)));
    let (client, server) = api_server(echo);
    let notices = engine.sync(&client).await;
    drop(client);
    let calls = server.await.expect("server");
    assert!(notices.is_empty(), "{notices:?}");
    assert!(engine.retiring().is_empty(), "cleanup finished");
    let left = s3
        .list_objects_v2()
        .bucket(&bucket)
        .prefix("bundles/irsa/c1/irsa-team/api/")
        .send()
        .await
        .expect("list");
    assert_eq!(left.key_count(), Some(0), "{:?}", left.contents());
    s3.head_object()
        .bucket(&bucket)
        .key("bundles/irsa/c1/irsa-team/web/bundle.tar.gz")
        .send()
        .await
        .expect("the neighbour's bundle stays");
    let gone = iam.get_role().role_name(role_name).send().await.expect_err("role deleted");
    assert!(gone.as_service_error().is_some_and(|e| e.is_no_such_entity_exception()), "{gone:?}");
    let web_role = engine.statuses().systems["irsa-team/web"].role_arn.clone().expect("web role");
    iam.get_role()
        .role_name(web_role.rsplit('/').next().expect("name"))
        .send()
        .await
        .expect("the neighbour's role stays");
    let released = calls
        .iter()
        .find(|c| c.is(&Method::PATCH, "/api/v1/namespaces/irsa-team/serviceaccounts/opa"))
        .expect("annotation released");
    assert!(released.body["metadata"].get("annotations").is_none(), "{}", released.body);
    assert!(
        calls.iter().any(|c| c.is(&Method::DELETE, "/api/v1/namespaces/irsa-team/configmaps/api-opa-config")),
        "{calls:#?}"
    );
    let finalizer = calls.last().expect("calls");
    assert!(
        finalizer.is(&Method::PATCH, "/apis/edict.dev/v1alpha1/namespaces/irsa-team/systems/api"),
        "{finalizer:?}"
    );
}

#[tokio::test]
async fn unreachable_storage_is_retried_with_back_off_and_said_in_status() {
    credentials();
    let moto = aws::moto();
    let s3 = aws::s3_from(&aws::sdk_config(&moto, "testing", "testing"));
    let bucket = aws::unique("outage");
    s3.create_bucket().bucket(&bucket).send().await.expect("bucket");
    let proxy = common::proxy::Proxy::start(&moto).await;
    let endpoint = proxy.url.clone();
    let text = format!(
        r#"
apiVersion: edict.dev/v1alpha1
kind: Tenant
metadata: {{name: outage}}
spec:
  adminNamespace: outage-admin
  namespaces: ["outage-*"]
  storage:
    region: us-east-1
    s3: {{bucket: {bucket}, prefix: prod, endpoint: "{endpoint}", forcePathStyle: true, sseKms: false}}
    dynamodb: {{table: {table}, endpoint: "{endpoint}", create: true}}
---
apiVersion: edict.dev/v1alpha1
kind: System
metadata: {{name: api, namespace: outage-team}}
spec: {{type: custom}}
"#,
        table = aws::unique("outage")
    );
    let store = tempfile::tempdir().expect("tempdir");
    // moto corrupts items under concurrent DynamoDB transactions on one table: publish one at a time.
    let mut engine = Engine::new("c1", store.path().to_path_buf()).with_parallelism(1);
    let mut keys = Vec::new();
    for located in manifest::parse("", &text).objects {
        keys.extend(engine.apply(Change::Apply(Box::new(located))));
    }
    proxy.set_down(true);
    engine.reconcile(&keys).await;
    let statuses = engine.statuses();
    let system = &statuses.systems["outage-team/api"];
    let (ready, reconciling, stalled) = (&system.conditions[0], &system.conditions[2], &system.conditions[1]);
    assert_eq!((ready.status, ready.reason.as_str()), (edict::api::ConditionStatus::False, "Unavailable"));
    assert!(ready.message.starts_with("Tenant outage: storage: HeadBucket"), "{}", ready.message);
    assert_eq!(
        (reconciling.type_.as_str(), reconciling.status),
        ("Reconciling", edict::api::ConditionStatus::True),
        "still in progress: edict retries"
    );
    assert_eq!(stalled.status, edict::api::ConditionStatus::False);
    let tenant = &statuses.tenants["outage"].conditions[0];
    assert_eq!(tenant.reason, "Unavailable", "the Tenant says its storage is unreachable: {tenant:?}");
    let first = engine.next_retry().expect("a retry is scheduled");

    // Still down: the next attempt waits longer.
    engine.reconcile(&engine.due(first)).await;
    let second = engine.next_retry().expect("scheduled again");
    assert!(second - std::time::Instant::now() > std::time::Duration::from_millis(1500), "back-off grows");

    // Back: the retry publishes, without a restart.
    proxy.set_down(false);
    let due = engine.due(second);
    assert_eq!(due.len(), 1);
    engine.reconcile(&due).await;
    let statuses = engine.statuses();
    let ready = &statuses.systems["outage-team/api"].conditions[0];
    assert_eq!(
        (ready.status, ready.reason.as_str()),
        (edict::api::ConditionStatus::True, "Published"),
        "{ready:?}"
    );
    let tenant = &statuses.tenants["outage"].conditions[0];
    assert_eq!(tenant.reason, "StorageReady");
    assert!(
        tenant.message.contains(&format!("s3://{bucket}")) && tenant.message.contains("bundles not signed"),
        "{}",
        tenant.message
    );
    let live = "prod/bundles/outage/c1/outage-team/api/bundle.tar.gz";
    s3.head_object().bucket(&bucket).key(live).send().await.expect("published after the outage");
    assert_eq!(
        statuses.systems["outage-team/api"].bundle.as_deref(),
        Some(format!("s3://{bucket}/{live}").as_str()),
        "status.bundle says where the object is, prefix included"
    );
    assert!(engine.next_retry().is_none());

    // Cut again after it connected: the Tenant does not hide the outage, and the System's
    // message names the service and the resource; back, both recover.
    let system_object = |generation: i64| {
        let mut l = manifest::parse("", &text)
            .objects
            .into_iter()
            .find(|l| l.object.kind() == Kind::System)
            .expect("system");
        if let manifest::Object::System(s) = &mut l.object {
            s.spec.options.insert("generation".into(), serde_json::json!(generation));
            s.metadata.generation = Some(generation);
        }
        l
    };
    proxy.set_down(true);
    let keys: Vec<_> = engine.apply(Change::Apply(Box::new(system_object(2)))).into_iter().collect();
    engine.reconcile(&keys).await;
    let statuses = engine.statuses();
    let tenant = &statuses.tenants["outage"].conditions[0];
    assert_eq!(
        (tenant.status, tenant.reason.as_str()),
        (edict::api::ConditionStatus::False, "Unavailable"),
        "{tenant:?}"
    );
    let ready = &statuses.systems["outage-team/api"].conditions[0];
    assert!(
        ready.message.contains("DynamoDB table ") || ready.message.contains("bundles/outage/"),
        "the message names the table or the object: {}",
        ready.message
    );
    proxy.set_down(false);
    let due = engine.due(engine.next_retry().expect("retry"));
    engine.reconcile(&due).await;
    let statuses = engine.statuses();
    assert_eq!(statuses.tenants["outage"].conditions[0].reason, "StorageReady");
    assert_eq!(statuses.systems["outage-team/api"].conditions[0].status, edict::api::ConditionStatus::True);
    assert!(engine.next_retry().is_none());

    // edict's own status write comes back through the watch: the connection is kept...
    let tenant_object = || {
        manifest::parse("", &text)
            .objects
            .into_iter()
            .find(|l| l.object.kind() == Kind::Tenant)
            .expect("tenant")
    };
    let mut echoed = tenant_object();
    if let manifest::Object::Tenant(t) = &mut echoed.object {
        t.status = Some(edict::api::TenantStatus { systems: 1, ..Default::default() });
    }
    assert!(engine.apply(Change::Apply(Box::new(echoed))).is_empty());
    assert_eq!(engine.statuses().tenants["outage"].conditions[0].reason, "StorageReady");
    // ...while a change of its spec connects again (and checks again) on next use.
    let mut changed = tenant_object();
    if let manifest::Object::Tenant(t) = &mut changed.object {
        t.spec.retention = Some(edict::api::Retention { revisions: 3, decision_days: None });
    }
    engine.apply(Change::Apply(Box::new(changed)));
    assert_eq!(engine.statuses().tenants["outage"].conditions[0].reason, "Valid", "not checked yet");
}
