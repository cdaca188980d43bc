package gate

limit := 10

inner if limit > 50

allow if inner with data.gate.limit as 100
