package gate

f(x) := g(x) + 1

g(x) := x * 2

v := f(3)
