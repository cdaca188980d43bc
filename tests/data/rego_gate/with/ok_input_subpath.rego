package gate

inner if input.user.name == "alice"

allow if inner with input.user.name as "alice"
