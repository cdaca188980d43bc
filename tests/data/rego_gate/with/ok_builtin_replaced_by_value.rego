package gate

inner if count(input.xs) > 1

allow if inner with count as 5
