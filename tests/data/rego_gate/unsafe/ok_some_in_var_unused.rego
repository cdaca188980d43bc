package gate

allow if {
	some x in input.xs
	input.user == "alice"
}
