package gate

allow if count([1], 2, 3)
