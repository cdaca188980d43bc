package gate

allow if {
	x != 1
}
