package gate

size(x) := n if {
	n := count(x)
} else := lenght(x)
