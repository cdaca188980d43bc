package gate

double(x) := x * 2

allow if double(1, 2, 3)
