package gate

inner if input.x == 1

mock(_) := true

allow if inner with strings.nothing as mock
