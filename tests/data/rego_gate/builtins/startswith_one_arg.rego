package gate

allow if startswith("a")
