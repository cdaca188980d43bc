package gate

allow if {
	any([true], x)
	x
}
