package gate

limit := 10

allow if limit.max > 1
