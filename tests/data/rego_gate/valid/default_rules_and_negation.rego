package gate

default allow := false

default reason := "no rule matched"

allow if {
	input.method == "GET"
	not blocked
}

reason := "blocked path" if blocked

blocked if {
	some prefix in {"/admin", "/internal"}
	startswith(input.path, prefix)
}
