package gate

allow if {
	every x {
		x > 0
	}
}
