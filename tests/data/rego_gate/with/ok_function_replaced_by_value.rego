package gate

f(x) := x + 1

inner if f(1) == 2

allow if inner with f as 2
