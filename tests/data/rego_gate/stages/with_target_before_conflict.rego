package gate

inner if input.x == 1

allow if inner with foo as 1

a := 1

a contains 2
