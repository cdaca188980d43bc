package gate

d := {"a": 1} - {"a": 1}
