package gate

inner if input.x == 1

allow if {
	inner with input as value
}
