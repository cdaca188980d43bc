package gate

limit := 10

f(x) := x

inner if limit > 5

allow if inner with limit as f
