package gate

pair := [a, b] if {
	[a, b] = [input.x, input.y]
}
