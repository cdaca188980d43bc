package gate

allow if {
	some input in [1, 2]
	input > 1
}
