package gate

level := "high" if {
	input.x > 10
} else := "medium" if {
	input.x > 5
} else := "low"
