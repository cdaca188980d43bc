package gate

allow if {
	x := "a"
	x > 1
}
