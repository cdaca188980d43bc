package gate

inner if input.x == 1

allow if {
	some k in ["x"]
	inner with input[k] as 1
}
