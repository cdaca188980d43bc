package gate

f(x) := x + 1

g(x, y) := x + y

inner if f(1) == 2

allow if inner with f as g
