package gate

allow if regex.match("^a", input.name)
