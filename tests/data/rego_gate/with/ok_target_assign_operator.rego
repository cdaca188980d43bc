package gate

inner if {
	x := 1
	x == 1
}

allow if inner with assign as mock

mock(a, b) := true
