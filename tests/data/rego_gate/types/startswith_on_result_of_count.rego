package gate

allow if startswith(count(input.xs), "1")
