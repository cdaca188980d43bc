package gate

fallback := "low"

level := "high" if {
	input.x > 10
} else := fallback
