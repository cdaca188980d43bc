package gate

allow if {
	every data in [1] {
		data > 0
	}
}
