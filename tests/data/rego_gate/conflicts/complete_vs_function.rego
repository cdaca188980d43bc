package gate

limit := 10

limit(x) := x * 10
