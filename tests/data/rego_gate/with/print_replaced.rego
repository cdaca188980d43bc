package gate

inner if {
	print("hello")
	input.x == 1
}

log(_) := true

allow if inner with print as log
