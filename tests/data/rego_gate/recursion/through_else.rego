package gate

level := "high" if {
	input.x > 10
} else := level
