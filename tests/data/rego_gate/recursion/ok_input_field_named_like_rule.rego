package gate

allow if input.allow
