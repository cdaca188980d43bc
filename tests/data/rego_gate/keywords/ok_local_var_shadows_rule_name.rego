package gate

limit := 10

allow if {
	limit := 5
	limit < 10
}
