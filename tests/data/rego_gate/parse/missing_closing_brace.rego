package gate

allow if {
	input.user == "alice"
