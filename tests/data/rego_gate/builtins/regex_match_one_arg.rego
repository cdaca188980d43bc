package gate

allow if regex.match("^a")
