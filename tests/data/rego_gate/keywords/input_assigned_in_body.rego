package gate

allow if {
	input := {"x": 1}
	input.x == 1
}
