package gate

allow if 1 == "a"
