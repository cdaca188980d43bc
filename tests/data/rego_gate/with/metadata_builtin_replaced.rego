package gate

inner if rego.metadata.rule() == {}

allow if inner with rego.metadata.rule as {"x": 1}
