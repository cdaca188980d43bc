package gate

a := 1

a contains 2

b if {
	x := 1
	x := 2
}
