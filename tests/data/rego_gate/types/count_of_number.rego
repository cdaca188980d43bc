package gate

allow if count(5) > 0
