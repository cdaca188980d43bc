package gate

a := 1

a(x) := x

b if nope(1)
