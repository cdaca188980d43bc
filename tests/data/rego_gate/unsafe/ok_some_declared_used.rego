package gate

allow if {
	some i
	input.users[i] == "alice"
}
