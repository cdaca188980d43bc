package gate

allow if {
	data := 1
	data == 1
}
