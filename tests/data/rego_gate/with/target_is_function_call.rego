package gate

f(x) := x

inner if f(1) == 1

allow if inner with f(1) as 2
