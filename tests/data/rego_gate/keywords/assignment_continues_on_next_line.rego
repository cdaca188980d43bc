package gate

allow if {
	x :=
	x == 1
}
