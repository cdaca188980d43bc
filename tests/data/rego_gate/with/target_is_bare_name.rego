package gate

inner if input.x == 1

allow if inner with foo as 2
