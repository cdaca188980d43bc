package gate

allow if plus(1)
