package gate

allow if {
	every v in [true, input.ok] {
		v == true
	}
}
