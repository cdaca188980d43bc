package gate

allow if {
	x := 1
	some x in [1, 2]
}
