package gate

allow if {
	every x in input.xs {
		x > 0
	}
}
