package gate

allow if {
	some i
	input.user == "alice"
}
