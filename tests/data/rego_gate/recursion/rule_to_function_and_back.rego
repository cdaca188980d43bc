package gate

limit := cap(input.x)

cap(x) := y if {
	y := min([x, limit])
}
