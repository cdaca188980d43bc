use aws_sdk_dynamodb::types::{
    AttributeDefinition, KeySchemaElement, KeyType, Projection, ProjectionType, ScalarAttributeType,
    TableDescription,
};

use super::keys::{GSI1, GSI1PK, GSI1SK, commit_sk, stack_pk, system_pk};
use super::table::shape_problems;

#[test]
fn keys_are_tenant_scoped_and_ordered() {
    assert_eq!(system_pk("acme", "c/ns/web"), "T#acme#SYS#c/ns/web");
    assert_eq!(stack_pk("acme", "admin/base"), "T#acme#STK#admin/base");
    assert_eq!(commit_sk(42), "C#00000000000000000042");
    assert!(commit_sk(9) < commit_sk(10));
}

#[test]
fn shape_problems_name_differences() {
    let ks = |name: &str, t: KeyType| {
        KeySchemaElement::builder().attribute_name(name).key_type(t).build().unwrap()
    };
    let bad = TableDescription::builder()
        .key_schema(ks("id", KeyType::Hash))
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("PK")
                .attribute_type(ScalarAttributeType::N)
                .build()
                .unwrap(),
        )
        .build();
    let problems = shape_problems(&bad).join("; ");
    assert!(problems.contains("key schema is id (HASH), expected PK (HASH), SK (RANGE)"), "{problems}");
    assert!(problems.contains("attribute PK has type N, expected S"), "{problems}");
    assert!(problems.contains("global secondary index GSI1 is missing"), "{problems}");
    let good = TableDescription::builder()
        .key_schema(ks("SK", KeyType::Range))
        .key_schema(ks("PK", KeyType::Hash))
        .global_secondary_indexes(
            aws_sdk_dynamodb::types::GlobalSecondaryIndexDescription::builder()
                .index_name(GSI1)
                .key_schema(ks(GSI1PK, KeyType::Hash))
                .key_schema(ks(GSI1SK, KeyType::Range))
                .projection(Projection::builder().projection_type(ProjectionType::All).build())
                .build(),
        )
        .build();
    assert_eq!(shape_problems(&good), Vec::<String>::new());
}
