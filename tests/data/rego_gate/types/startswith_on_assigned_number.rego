package gate

allow if {
	x := 1
	startswith(x, "a")
}
