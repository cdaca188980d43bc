package gate

inner if 1 in input.xs

always(_, _) := true

allow if inner with internal.member_2 as always
