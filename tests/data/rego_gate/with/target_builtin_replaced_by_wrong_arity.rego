package gate

inner if count(input.xs) > 1

two(a, b) := 2

allow if inner with count as two
