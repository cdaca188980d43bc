package gate

allow if contains_any(input.tags, ["a"])
