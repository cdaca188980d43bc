package gate

limit := 10

parts contains x if {
	x := limit[_]
}
