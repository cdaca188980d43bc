package gate

inner if input.x == 1

always(_, _) := true

allow if inner with eq as always
