package gate

inner if count(input.xs) > 1

always_two(_) := 2

allow if inner with count as always_two
