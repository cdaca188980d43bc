package gate

inner if input.x == 1

allow if {
	x := 1
	inner with x as 2
}
