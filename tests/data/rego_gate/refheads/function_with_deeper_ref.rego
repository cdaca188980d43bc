package gate

f(x) := x

f.g := 1
