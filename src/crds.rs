//! The CustomResourceDefinitions, generated from the Rust types (never hand-edited).

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};
use kube::CustomResourceExt;

use crate::api::{Policy, Stack, System, Tenant};

/// The `format`s the API server knows (`apiextensions-apiserver`'s `supportedVersionedFormats`,
/// plus the numeric ones of OpenAPI it accepts without a warning). schemars also writes formats
/// such as `uint32`, which `kubectl apply` reports as `unrecognized format`: those are dropped
/// (the bounds they stand for stay as `minimum`/`maximum`).
pub const KNOWN_FORMATS: &[&str] = &[
    "bsonobjectid",
    "uri",
    "email",
    "hostname",
    "ipv4",
    "ipv6",
    "cidr",
    "mac",
    "uuid",
    "uuid3",
    "uuid4",
    "uuid5",
    "isbn",
    "isbn10",
    "isbn13",
    "creditcard",
    "ssn",
    "hexcolor",
    "rgbcolor",
    "byte",
    "password",
    "date",
    "duration",
    "datetime",
    "date-time",
    "int32",
    "int64",
    "float",
    "double",
];

/// Every CRD, in a stable order.
pub fn all() -> Vec<CustomResourceDefinition> {
    let mut crds = vec![Tenant::crd(), Stack::crd(), System::crd(), Policy::crd()];
    for crd in &mut crds {
        for version in &mut crd.spec.versions {
            if let Some(schema) = version.schema.as_mut().and_then(|s| s.open_api_v3_schema.as_mut()) {
                drop_unknown_formats(schema);
            }
        }
    }
    crds
}

/// Removes every `format` the API server does not know from `schema` and the schemas inside it.
fn drop_unknown_formats(schema: &mut JSONSchemaProps) {
    if schema.format.as_deref().is_some_and(|f| !KNOWN_FORMATS.contains(&f)) {
        schema.format = None;
    }
    let nested = schema
        .properties
        .iter_mut()
        .flat_map(|p| p.values_mut())
        .chain(schema.pattern_properties.iter_mut().flat_map(|p| p.values_mut()))
        .chain(schema.definitions.iter_mut().flat_map(|d| d.values_mut()))
        .chain(schema.all_of.iter_mut().flatten())
        .chain(schema.any_of.iter_mut().flatten())
        .chain(schema.one_of.iter_mut().flatten())
        .chain(schema.not.as_deref_mut());
    let mut inner: Vec<&mut JSONSchemaProps> = nested.collect();
    match schema.items.as_mut() {
        Some(JSONSchemaPropsOrArray::Schema(s)) => inner.push(s),
        Some(JSONSchemaPropsOrArray::Schemas(list)) => inner.extend(list.iter_mut()),
        None => {}
    }
    for extra in [schema.additional_properties.as_mut(), schema.additional_items.as_mut()] {
        if let Some(JSONSchemaPropsOrBool::Schema(s)) = extra {
            inner.push(s);
        }
    }
    for s in inner {
        drop_unknown_formats(s);
    }
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
