package gate

allow if foo(1)
