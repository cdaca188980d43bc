package gate

a if {
	x := 1
	x == 1
}

b if {
	x := 2
	x == 2
}
