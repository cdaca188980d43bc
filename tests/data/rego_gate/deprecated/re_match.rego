package gate

allow if re_match("^a", input.name)
