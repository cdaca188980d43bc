package gate

f(x) := x

f(x, y) := x + y
