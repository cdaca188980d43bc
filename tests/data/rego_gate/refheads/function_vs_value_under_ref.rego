package gate

lib.f(x) := x

lib.f := 2
