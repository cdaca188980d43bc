package gate

default allow := false

allow if input.user == "alice"

allow if input.user == "bob"
