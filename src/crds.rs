//! The CustomResourceDefinitions, generated from the Rust types (never hand-edited).

use kube::CustomResourceExt;

use crate::api::{Policy, Stack, System, Tenant};

/// Every CRD, in a stable order.
pub fn all()
-> Vec<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> {
    vec![Tenant::crd(), Stack::crd(), System::crd(), Policy::crd()]
}

/// The CRDs as one multi-document YAML stream (what `edict crds` prints and `crds/` holds).
pub fn yaml() -> Result<String, serde_norway::Error> {
    let mut out = String::new();
    for crd in all() {
        out.push_str("---\n");
        out.push_str(&serde_norway::to_string(&crd)?);
    }
    Ok(out)
}

/// File name and content of each CRD for the `crds/` directory.
pub fn files() -> Result<Vec<(String, String)>, serde_norway::Error> {
    all()
        .into_iter()
        .map(|crd| {
            let name = format!("{}.yaml", crd.metadata.name.clone().unwrap_or_default());
            Ok((name, serde_norway::to_string(&crd)?))
        })
        .collect()
}
