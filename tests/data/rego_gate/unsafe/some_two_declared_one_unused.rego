package gate

allow if {
	some i, j
	input.users[i] == "alice"
}
