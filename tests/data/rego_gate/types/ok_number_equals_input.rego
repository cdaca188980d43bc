package gate

allow if input.count == "a"
