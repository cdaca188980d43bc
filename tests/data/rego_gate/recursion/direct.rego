package gate

allow if allow
